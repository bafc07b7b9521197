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
from connections_app.models import ApiBudget, Connection, ServiceKey, TokenUnavailable
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
UNKNOWN_ID = "00000000-0000-4000-8000-000000000000"


class World:
    """A connection with a valid token, one never authorized, and a key that may use both."""

    def __init__(
        self, client: Client, authorized: Connection, pending: Connection, fake: FakeKroger
    ) -> None:
        self.client = client
        self.authorized = authorized
        self.pending = pending
        self.fake = fake
        self.key, self.raw = ServiceKey.create_key(
            may_fetch_tokens=True, name="Conformance", connections=[authorized, pending]
        )
        _, self.token_only = ServiceKey.create_key(
            may_fetch_tokens=True, may_proxy=False, name="Tokens only", connections=[authorized]
        )

    def get(
        self, path: str, *, key: str | None = "valid", method: str = "get", body: Any = None
    ) -> Any:
        headers = {}
        if key == "valid":
            headers["Authorization"] = f"Bearer {self.raw}"
        elif key is not None:
            headers["Authorization"] = f"Bearer {key}"
        extra: dict[str, Any] = {}
        if body is not None:
            extra = {"data": body, "content_type": "application/json"}
        return getattr(self.client, method)(path, headers=headers, **extra)

    def fill(self, template: str, connection: Connection | str, path: str = "products") -> str:
        ident = connection if isinstance(connection, str) else str(connection.code)
        return template.replace("{id}", ident).replace("{path}", path)

    def spent(self) -> None:
        ApiBudget.objects.create(client=self.authorized.client, api="products", daily_limit=0)

    def unreachable(self) -> None:
        self.fake.stop()


Scenario = Callable[[World, str], Any]
PROXY = "/api/v1/connections/{id}/kroger/{path}"
CART = '{"items": [{"upc": "0001111041700", "quantity": 1}]}'
TOO_BIG = '{"x": "' + "0" * (1024 * 1024) + '"}'


def _then(first: Callable[[], Any], answer: Callable[[], Any]) -> Any:
    first()
    return answer()


def _slow(w: World, p: str) -> Any:
    w.fake.api_delay = 2.5  # the fake_kroger fixture's KROGER_TIMEOUT_SECONDS is 2
    return w.get(w.fill(p, w.authorized))


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
    (PROXY, "get", "200"): lambda w, p: w.get(w.fill(p, w.authorized, "products?filter.term=x")),
    (PROXY, "get", "400"): lambda w, p: w.get(w.fill(p, w.authorized, "%2e%2e/connect/oauth2")),
    (PROXY, "get", "401"): lambda w, p: w.get(w.fill(p, w.authorized), key=None),
    (PROXY, "get", "403"): lambda w, p: w.get(w.fill(p, w.authorized), key=w.token_only),
    (PROXY, "get", "404"): lambda w, p: w.get(w.fill(p, UNKNOWN_ID)),
    (PROXY, "get", "405"): lambda w, p: w.get(w.fill(p, w.authorized), method="patch"),
    (PROXY, "get", "409"): lambda w, p: w.get(w.fill(p, w.pending)),
    (PROXY, "get", "429"): lambda w, p: _then(w.spent, lambda: w.get(w.fill(p, w.authorized))),
    (PROXY, "get", "502"): lambda w, p: _then(
        w.unreachable, lambda: w.get(w.fill(p, w.authorized))
    ),
    (PROXY, "get", "504"): _slow,
    (PROXY, "put", "204"): lambda w, p: w.get(
        w.fill(p, w.authorized, "cart/add"), method="put", body=CART
    ),
    (PROXY, "put", "400"): lambda w, p: w.get(
        w.fill(p, w.authorized, "cart/add"), method="put", body="not json"
    ),
    (PROXY, "put", "413"): lambda w, p: w.get(
        w.fill(p, w.authorized, "cart/add"), method="put", body=TOO_BIG
    ),
    (PROXY, "put", "429"): lambda w, p: _then(
        w.spent, lambda: w.get(w.fill(p, w.authorized, "products/1"), method="put", body=CART)
    ),
    (PROXY, "post", "400"): lambda w, p: w.get(w.fill(p, w.authorized), method="post", body="{"),
    (PROXY, "post", "413"): lambda w, p: w.get(
        w.fill(p, w.authorized), method="post", body=TOO_BIG
    ),
    (PROXY, "delete", "400"): lambda w, p: w.get(
        w.fill(p, w.authorized, "products/..%5c"), method="delete"
    ),
    ("/api/v1/connections/{id}/token", "get", "403"): lambda w, p: w.get(
        w.fill(p, w.authorized), key=_proxy_only(w)
    ),
    ("/api/v1/openapi.json", "get", "200"): lambda w, p: w.get(p, key=None),
    ("/api/v1/openapi.json", "get", "405"): lambda w, p: w.get(p, key=None, method="put"),
}


def _proxy_only(w: World) -> str:
    return ServiceKey.create_key(name="Proxy only", connections=[w.authorized])[1]


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
def world(
    client: Client, connection: Connection, oauth_client: Any, fake_kroger: FakeKroger
) -> World:
    authorize(connection, fake_kroger)
    pending = Connection.objects.create(
        name="Never authorized", environment="production", client=oauth_client
    )
    return World(client, connection, pending, fake_kroger)


def test_the_description_is_openapi_3_1_with_valid_schemas() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    for schema in DOCUMENT["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    for path, method, status in documented_responses():
        response = resolve(DOCUMENT["paths"][path][method]["responses"][status])
        if status == "204":
            assert "content" not in response
            continue
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
    if "content" in documented:
        assert response["Content-Type"] == "application/json"
        body = response.json()
        validator_for(documented["content"]["application/json"]["schema"]).validate(body)
    else:
        assert response.content == b""
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
    for code in (
        "not_authorized",
        "needs_reauthorization",
        "kroger_unavailable",
        "secrets_unreadable",
    ):

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


def _template(route: str) -> str:
    """A route as an OpenAPI path: <code> and (?P<code>…) become {id}, (?P<path>…) {path}."""
    route = re.sub(r"\(\?P<code>[^)]*\)", "{id}", route.removeprefix("^").removesuffix("$"))
    route = re.sub(r"\(\?P<path>[^)]*\)", "{path}", route)
    return re.sub(r"<(?:\w+:)?\w+>", "{id}", route)


def test_every_api_route_is_documented() -> None:
    api_routes = {
        "/" + _template(route)
        for route in _routes(get_resolver().url_patterns)
        if route.removeprefix("^").startswith("api/")  # not the readable /service-api/ page
    }
    assert api_routes
    assert api_routes == set(DOCUMENT["paths"])
