"""The OpenAPI description stays true: every documented path answers every documented status
with a body matching the documented schema, and every API route is documented."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from jsonschema import Draft202012Validator, FormatChecker

from connections_app import lifecycle
from connections_app.api import OPENAPI_PATH
from connections_app.models import Connection, ServiceKey, TokenUnavailable

pytestmark = pytest.mark.django_db

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


class World:
    """A connection with a valid token, one never authorized, and a key that may use both."""

    def __init__(self, client: Client, authorized: Connection, pending: Connection) -> None:
        self.client = client
        self.authorized = authorized
        self.pending = pending
        self.key, self.raw = ServiceKey.create_key(
            name="Conformance", connections=[authorized, pending]
        )

    def get(self, path: str, *, key: str | None = "valid", method: str = "get") -> Any:
        headers = {}
        if key == "valid":
            headers["Authorization"] = f"Bearer {self.raw}"
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        return getattr(self.client, method)(path, headers=headers)

    def fill(self, template: str, connection: Connection | str) -> str:
        ident = connection if isinstance(connection, str) else str(connection.code)
        return template.replace("{id}", ident)


Scenario = Callable[[World, str], Any]

# For each documented (path, method, status): how to make the running views answer it.
SCENARIOS: dict[tuple[str, str, str], Scenario] = {
    ("/api/v1/connections/", "get", "200"): lambda w, p: w.get(p),
    ("/api/v1/connections/", "get", "401"): lambda w, p: w.get(p, key=None),
    ("/api/v1/connections/", "get", "405"): lambda w, p: w.get(p, method="post"),
    ("/api/v1/connections/{id}/token", "get", "200"): lambda w, p: w.get(w.fill(p, w.authorized)),
    ("/api/v1/connections/{id}/token", "get", "401"): lambda w, p: w.get(
        w.fill(p, w.authorized), key="kcp_00000000_unknown"
    ),
    ("/api/v1/connections/{id}/token", "get", "404"): lambda w, p: w.get(w.fill(p, UNKNOWN_ID)),
    ("/api/v1/connections/{id}/token", "get", "405"): lambda w, p: w.get(
        w.fill(p, w.authorized), method="delete"
    ),
    ("/api/v1/connections/{id}/token", "get", "409"): lambda w, p: w.get(w.fill(p, w.pending)),
    ("/api/v1/openapi.json", "get", "200"): lambda w, p: w.get(p, key=None),
    ("/api/v1/openapi.json", "get", "405"): lambda w, p: w.get(p, key=None, method="put"),
}


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` (OpenAPI allows them for whole responses and headers)."""
    while "$ref" in node:
        target: Any = DOCUMENT
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def documented_responses() -> list[tuple[str, str, str]]:
    return [
        (path, method, status)
        for path, item in DOCUMENT["paths"].items()
        for method, operation in item.items()
        for status in operation["responses"]
    ]


def validator_for(schema: dict[str, Any]) -> Draft202012Validator:
    # The response schema's $refs point into the document's components.
    return Draft202012Validator(
        {**schema, "components": DOCUMENT["components"]}, format_checker=FormatChecker()
    )


@pytest.fixture
def world(client: Client, connection: Connection, oauth_client: Any) -> World:
    connection.store_tokens(
        access_token="access-token-Oas51Vx", expires_in=1800, granted_scopes="product.compact"
    )
    pending = Connection.objects.create(
        name="Never authorized", environment="production", client=oauth_client
    )
    return World(client, connection, pending)


def test_the_description_is_openapi_3_1_with_valid_schemas() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, method, status in documented_responses():
        response = resolve(DOCUMENT["paths"][path][method]["responses"][status])
        Draft202012Validator.check_schema(response["content"]["application/json"]["schema"])


def test_every_documented_response_has_a_scenario() -> None:
    assert set(documented_responses()) == set(SCENARIOS)


@pytest.mark.parametrize(("path", "method", "status"), documented_responses())
def test_the_running_view_answers_as_documented(
    world: World, path: str, method: str, status: str
) -> None:
    response = SCENARIOS[(path, method, status)](world, path)
    assert response.status_code == int(status)
    documented = resolve(DOCUMENT["paths"][path][method]["responses"][status])
    assert response["Content-Type"] == "application/json"
    body = response.json()
    validator_for(documented["content"]["application/json"]["schema"]).validate(body)
    for header, spec in documented.get("headers", {}).items():
        assert header in response, header
        Draft202012Validator(
            {**resolve(spec)["schema"], "components": DOCUMENT["components"]}
        ).validate(response[header])


def test_a_documented_409_code_matches_what_connections_raise(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = resolve(
        DOCUMENT["paths"]["/api/v1/connections/{id}/token"]["get"]["responses"]["409"]
    )["content"]["application/json"]["schema"]
    for code in ("not_authorized", "needs_reauthorization", "kroger_unavailable"):

        def unavailable(connection: Connection, *, actor: Any = None, code: str = code) -> Any:
            raise TokenUnavailable(code, "reason")

        monkeypatch.setattr(lifecycle, "get_access_token", unavailable)
        body = world.get(world.fill("/api/v1/connections/{id}/token", world.authorized)).json()
        validator_for(schema).validate(body)
    with pytest.raises(Exception, match="is not one of"):
        validator_for(schema).validate({"error": {"code": "surprise", "message": "x"}})


def test_the_served_description_is_the_file(client: Client) -> None:
    assert client.get("/api/v1/openapi.json").json() == DOCUMENT


def _routes(patterns: list[Any], prefix: str = "") -> list[str]:
    found: list[str] = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            found.append(prefix + str(pattern.pattern))
    return found


def test_every_api_route_is_documented() -> None:
    api_routes = {
        "/" + re.sub(r"<(?:\w+:)?\w+>", "{id}", route)
        for route in _routes(get_resolver().url_patterns)
        if route.startswith("api/")
    }
    assert api_routes
    assert api_routes == set(DOCUMENT["paths"])
