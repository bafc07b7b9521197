"""The service API's reference, read from openapi.json, as a page people can read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.http import require_safe

from connections_app.api import OPENAPI_PATH

METHODS = ("get", "put", "post", "delete", "patch")


def inline_code(text: str) -> SafeString:
    """Escape ``text`` and show its `backticked` parts as code, as openapi.json writes them."""
    escaped = escape(text)
    return mark_safe(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))  # noqa: S308


@dataclass
class Operation:
    method: str
    path: str
    summary: str
    description: SafeString
    parameters: list[tuple[str, str, SafeString]] = field(default_factory=list)
    responses: list[tuple[str, SafeString]] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", f"{self.method} {self.path}".lower()).strip("-")


def _resolve(spec: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    ref = item.get("$ref", "")
    if not ref.startswith("#/"):
        return item
    target: Any = spec
    for part in ref[2:].split("/"):
        target = target[part]
    return dict(target)


@cache
def reference() -> tuple[dict[str, Any], list[Operation]]:
    spec = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    operations = []
    for path, item in spec["paths"].items():
        shared = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            parameters = [
                _resolve(spec, parameter) for parameter in [*shared, *op.get("parameters", [])]
            ]
            operations.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=op.get("summary", ""),
                    description=inline_code(op.get("description", "")),
                    parameters=[
                        (p["name"], p.get("in", ""), inline_code(p.get("description", "")))
                        for p in parameters
                    ],
                    responses=[
                        (status, inline_code(_resolve(spec, answer).get("description", "")))
                        for status, answer in op.get("responses", {}).items()
                    ],
                )
            )
    return spec["info"], operations


@require_safe
def api_docs(request: HttpRequest) -> HttpResponse:
    """Public, like the openapi.json it reads: it holds nothing secret."""
    info, operations = reference()
    return render(
        request,
        "connections/api_docs.html",
        {
            "info": info,
            "description": inline_code(info.get("description", "")),
            "operations": operations,
        },
    )
