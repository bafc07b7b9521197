"""Keep secrets out of logs and error reports."""

from __future__ import annotations

import logging
import re
from typing import Any

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# Names whose values are secret wherever they appear: query strings, form bodies, JSON.
SECRET_NAMES = (
    "access_token",
    "refresh_token",
    "client_secret",
    "code",
    "code_verifier",
    "state",
    "password",
    "authorization",
    "api_key",
)
_NAMES = "|".join(SECRET_NAMES)
_PATTERNS = [
    # key=value in URLs and form bodies
    re.compile(rf"(?i)\b({_NAMES})=([^&\s'\"]+)"),
    # "key": "value" in JSON
    re.compile(rf"(?i)(\"(?:{_NAMES})\"\s*:\s*\")([^\"]+)"),
    # Authorization headers
    re.compile(r"(?i)\b(Basic|Bearer)\s+([A-Za-z0-9._~+/=-]{8,})"),
]
REDACTED = "[redacted]"


# Line breaks, other control characters and bidirectional controls in a message (a name
# stored before names were checked, a header Kroger sent) could forge or disguise log lines.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with every character that could break or reorder a log line escaped."""
    return _UNPRINTABLE.sub(
        lambda match: _ESCAPES.get(match.group(0), f"\\u{ord(match.group(0)):04x}"), text
    )


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(_replace, text)
    return text


def _replace(match: re.Match[str]) -> str:
    whole, value = match.group(0), match.group(2)
    return whole[: len(whole) - len(value)] + REDACTED


class RedactSecretsFilter(logging.Filter):
    """Rewrites every record's message so no token, code or secret reaches a log line."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = one_line(redact(message))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class QuerylessRequestLineFilter(logging.Filter):
    """The development server logs each request line, query string included: the OAuth
    callback's carries ``code`` and ``state``. Keep the path only (as gunicorn's log does)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple) and isinstance(record.args[0], str):
            line = _QUERY_IN_REQUEST_LINE.sub(r"\1", record.args[0])
            record.args = (line, *record.args[1:])
        return True


_QUERY_IN_REQUEST_LINE = re.compile(r"^(\S+ [^?\s]*)\?\S*")


class SecretsExceptionReporterFilter(SafeExceptionReporterFilter):
    """Error reports hide OAuth parameters (``code``, ``state``, ...) as well as passwords,
    and so does the debug page of ``make run``: Django's filter stands aside when DEBUG is on,
    showing every frame's variables as they are, this one never does."""

    hidden_settings = re.compile(
        r"API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|ENCRYPTION", flags=re.IGNORECASE
    )

    def is_active(self, request: Any) -> bool:
        return True

    def get_traceback_frame_variables(self, request: Any, tb_frame: Any) -> Any:
        # Besides what @sensitive_variables names: any variable named like a secret.
        return [
            (name, self.cleansed_substitute if self._secret_name(name) else value)
            for name, value in super().get_traceback_frame_variables(request, tb_frame)
        ]

    def _secret_name(self, name: str) -> bool:
        return name.lower() in SECRET_NAMES or bool(self.hidden_settings.search(name))

    def get_post_parameters(self, request: Any) -> Any:
        params = super().get_post_parameters(request)
        return self.hide_secret_names(params)

    def get_safe_request_meta(self, request: Any) -> dict[str, Any]:
        meta = super().get_safe_request_meta(request)
        for key in ("QUERY_STRING", "HTTP_AUTHORIZATION", "HTTP_REFERER", "REQUEST_URI"):
            if key in meta:
                meta[key] = self.cleansed_substitute
        return meta

    def get_cleansed_multivaluedict(self, request: Any, multivaluedict: Any) -> Any:
        # Covers request.GET and request.POST wherever they appear among a frame's variables.
        return self.hide_secret_names(super().get_cleansed_multivaluedict(request, multivaluedict))

    def cleanse_special_types(self, request: Any, value: Any) -> Any:
        value = super().cleanse_special_types(request, value)
        if isinstance(value, HttpRequest):
            # A request's repr carries its full path, query string included.
            return f"<{type(value).__name__}: {value.method} {value.path!r}>"
        return value

    def hide_secret_names(self, params: Any) -> Any:
        if params is None:
            return params
        cleansed = params.copy()
        for name in SECRET_NAMES:
            if name in cleansed:
                cleansed[name] = self.cleansed_substitute
        return cleansed


class SecretsExceptionReporter(ExceptionReporter):
    """Error reports (mailed or logged) without the query string's secrets.

    Django's own report lists ``request.GET`` and the full request URL unfiltered; the OAuth
    callback carries ``code`` and ``state`` there.
    """

    def get_traceback_data(self) -> dict[str, Any]:
        data = super().get_traceback_data()
        request = self.request
        if request is not None:
            hidden = SecretsExceptionReporterFilter.cleansed_substitute
            data["request_GET_items"] = (
                SecretsExceptionReporterFilter().hide_secret_names(request.GET).items()
            )
            if request.META.get("QUERY_STRING"):
                url = data["request_insecure_uri"].split("?", 1)[0]
                data["request_insecure_uri"] = f"{url}?{hidden}"
        return data
