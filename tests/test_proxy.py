"""The Kroger API proxy, against the fake Kroger on a real socket: what it forwards, what it
refuses without calling Kroger, what travels back, and the renewal after a 401."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import certifi
import pytest
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from connections_app import lifecycle, proxy
from connections_app.models import (
    ApiBudget,
    ApiUsage,
    Connection,
    ServiceKey,
)
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


@pytest.fixture
def online(connection: Connection, fake_kroger: FakeKroger) -> Connection:
    connection.scopes.add(*connection.scopes.model.objects.filter(name="profile.compact"))
    return authorize(connection, fake_kroger)


@pytest.fixture
def proxy_key(online: Connection) -> str:
    return ServiceKey.create_key(name="Shopping list service", connections=[online])[1]


def call(
    client: Client,
    connection: Connection,
    path: str,
    raw: str | None,
    *,
    method: str = "get",
    body: Any = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Any:
    all_headers = {"Authorization": f"Bearer {raw}"} if raw else {}
    all_headers.update(headers or {})
    url = f"/api/v1/connections/{connection.code}/kroger/{path}"
    kwargs: dict[str, Any] = {"headers": all_headers, **extra}
    if body is not None:
        kwargs["data"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
        kwargs["content_type"] = "application/json"
    return getattr(client, method)(url, **kwargs)


# --- What it forwards -------------------------------------------------------------------------


def test_it_forwards_a_products_search_with_the_connections_token(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    response = call(client, online, "products?filter.term=milk&filter.limit=5", proxy_key)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.json()["data"][0]["description"] == "milk"
    sent = fake_kroger.api_requests[-1]
    assert sent["method"] == "GET"
    assert sent["raw_path"] == "/v1/products?filter.term=milk&filter.limit=5"
    assert sent["headers"]["Authorization"] == f"Bearer {reloaded(online).access_token}"
    assert sent["headers"]["Accept"] == "application/json"


def test_it_forwards_locations_and_their_chains(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    found = call(client, online, "locations?filter.zipCode.near=45202", proxy_key)
    chains = call(client, online, "chains/KROGER", proxy_key)
    assert found.status_code == 200
    assert found.json()["data"][0]["zipCode"] == "45202"
    assert chains.status_code == 200
    assert fake_kroger.api_calls[-2:] == ["locations", "chains/KROGER"]


def test_it_puts_items_in_the_shoppers_cart_once(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    items = {"items": [{"upc": "0001111041700", "quantity": 2, "modality": "PICKUP"}]}
    response = call(client, online, "cart/add", proxy_key, method="put", body=items)
    assert response.status_code == 204
    assert response.content == b""
    assert fake_kroger.cart == items["items"]
    sent = fake_kroger.api_requests[-1]
    assert sent["method"] == "PUT"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert json.loads(sent["body"]) == items


def test_it_reads_the_shoppers_profile(client: Client, online: Connection, proxy_key: str) -> None:
    response = call(client, online, "identity/profile", proxy_key)
    assert response.status_code == 200
    assert response.json()["data"]["id"]


def test_kroger_errors_are_passed_through_with_their_status(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.fail_api(403)
    forbidden = call(client, online, "products?filter.term=milk", proxy_key)
    missing = call(client, online, "partner/catalog", proxy_key)
    assert forbidden.status_code == 403
    assert forbidden.json()["errors"]["reason"] == "Injected failure"
    assert missing.status_code == 404
    assert missing.json()["errors"]["code"] == "NotFound"


def test_a_delete_is_forwarded_and_kroger_answers_it(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    response = call(client, online, "cart/add", proxy_key, method="delete")
    assert response.status_code == 405  # Kroger's answer, not the portal's
    assert fake_kroger.api_requests[-1]["method"] == "DELETE"


# --- What never travels -----------------------------------------------------------------------

HOP_BY_HOP = ("Connection", "Keep-Alive", "Proxy-Authorization", "TE", "Trailer", "Upgrade")


def test_the_service_key_cookies_and_hop_by_hop_headers_stay_behind(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    client.cookies["sessionid"] = "portal-session-cookie"
    call(
        client,
        online,
        "products?filter.term=milk",
        proxy_key,
        headers={
            "Cookie": "tracking=1",
            "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
            "Keep-Alive": "timeout=5",
            "Upgrade": "websocket",
            "X-Forwarded-For": "10.0.0.1",
        },
    )
    sent = {name.lower(): value for name, value in fake_kroger.api_requests[-1]["headers"].items()}
    assert proxy_key not in json.dumps(sent)
    assert "cookie" not in sent
    assert "proxy-authorization" not in sent
    assert "keep-alive" not in sent
    assert "upgrade" not in sent
    assert "x-forwarded-for" not in sent


def test_krogers_cookies_and_other_headers_do_not_come_back(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.api_headers = {
        "Set-Cookie": "ak_bmsc=tracking; Path=/",
        "Keep-Alive": "timeout=5",
        "X-Kroger-Trace": "abc",
    }
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 200
    assert "Set-Cookie" not in response
    assert "Keep-Alive" not in response
    assert "X-Kroger-Trace" not in response
    assert not response.cookies
    assert response["Cache-Control"] == "no-store"


# --- What it refuses without calling Kroger ---------------------------------------------------

REFUSED_PATHS = [
    "",
    "/",
    "https://evil.example/products",
    "http:products",
    "//evil.example/products",
    "/products",
    "../connect/oauth2/token",
    "products/../connect/oauth2/token",
    "products/./x",
    "./products",
    ".",
    "..",
    "%2e%2e/connect/oauth2/token",
    "products/%2E%2E/%2e%2e/v2",
    "%252e%252e/connect/oauth2/token",
    "%25252e%25252e/x",
    "products%2f..%2fconnect",
    "products\\..\\x",
    "products%5c..",
    "products%0aHost:%20evil",
    "products%00",
    "products%7f",
    "products%250a",
    "connect/oauth2/token",
    "connect/oauth2/authorize?client_id=x",
    "CONNECT/oauth2/token",
    "%63onnect/oauth2/token",
    "products//x",
]


@pytest.mark.parametrize("path", REFUSED_PATHS)
def test_it_refuses_paths_outside_the_api_without_calling_kroger(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger, path: str
) -> None:
    response = call(client, online, path, proxy_key)
    assert response.status_code == 400, path
    assert response.json()["error"]["code"] == "invalid_path"
    assert fake_kroger.api_requests == []
    assert fake_kroger.token_calls == []
    assert not ApiUsage.objects.exists()


def test_it_refuses_control_characters_in_the_query(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    response = call(client, online, "products?filter.term=a%0d%0aX-Evil:%201", proxy_key)
    assert response.status_code == 400
    assert fake_kroger.api_requests == []


@pytest.mark.parametrize(
    "body",
    [
        '{"items": [{"upc": "0001111041700\\u0000", "quantity": 1}]}',
        '{"items": [{"upc": "0001111041700", "modality": "PICKUP\\u001b[2J"}]}',
        '{"items\\u0000": []}',
    ],
)
def test_it_refuses_control_characters_in_a_json_body(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger, body: str
) -> None:
    response = call(client, online, "cart/add", proxy_key, method="put", body=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert "control character" in response.json()["error"]["message"]
    assert fake_kroger.api_requests == []
    assert not ApiUsage.objects.exists()


@pytest.mark.parametrize("value", ["a\x00b", "a\r\nX-Evil: 1", "\x7f"])
def test_it_refuses_control_characters_in_a_header(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger, value: str
) -> None:
    response = call(client, online, "products", proxy_key, headers={"X-Request-Note": value})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "invalid_header",
        "message": "The X-Request-Note header holds a control character: send it without one.",
    }
    assert fake_kroger.api_requests == []


def test_a_body_over_one_mib_is_refused_before_it_is_read(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    big = json.dumps({"items": [{"upc": "0" * 1024}] * 1100})
    response = call(client, online, "cart/add", proxy_key, method="put", body=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"
    assert fake_kroger.api_requests == []


def test_a_body_that_is_not_json_is_refused(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    response = call(client, online, "cart/add", proxy_key, method="put", body="upc=1&qty=2")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_body"
    assert fake_kroger.api_requests == []


def test_other_methods_are_refused(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    for method in ("head", "options", "patch"):
        response = call(client, online, "products", proxy_key, method=method)
        assert response.status_code == 405, method
        assert response["Allow"] == "GET, PUT, POST, DELETE"
    assert fake_kroger.api_requests == []


def test_without_a_key_nothing_is_forwarded(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    response = call(client, online, "products", None)
    assert response.status_code == 401
    assert fake_kroger.api_requests == []


def test_a_connection_the_key_may_not_use_answers_404(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    _, raw = ServiceKey.create_key(name="Elsewhere", connections=[])
    response = call(client, online, "products", raw)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert fake_kroger.api_requests == []


# --- Key permissions --------------------------------------------------------------------------


def test_a_new_key_may_proxy_but_not_fetch_tokens(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    token = client.get(
        f"/api/v1/connections/{online.code}/token", headers={"Authorization": f"Bearer {proxy_key}"}
    )
    assert token.status_code == 403
    assert token.json()["error"]["code"] == "token_not_allowed"
    assert reloaded(online).access_token not in token.content.decode()
    assert call(client, online, "products?filter.term=milk", proxy_key).status_code == 200


def test_a_token_only_key_may_not_proxy(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    _, raw = ServiceKey.create_key(
        name="Token only", connections=[online], may_fetch_tokens=True, may_proxy=False
    )
    refused = call(client, online, "products?filter.term=milk", raw)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "proxy_not_allowed"
    assert fake_kroger.api_requests == []
    token = client.get(
        f"/api/v1/connections/{online.code}/token", headers={"Authorization": f"Bearer {raw}"}
    )
    assert token.status_code == 200


def test_a_key_allowed_both_may_do_both(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    _, raw = ServiceKey.create_key(
        name="Both", connections=[online], may_fetch_tokens=True, may_proxy=True
    )
    for path in ("products?filter.term=milk", "locations", "identity/profile"):
        assert call(client, online, path, raw).status_code == 200, path
    items = {"items": [{"upc": "0001111041700", "quantity": 1}]}
    assert call(client, online, "cart/add", raw, method="put", body=items).status_code == 204
    token = client.get(
        f"/api/v1/connections/{online.code}/token", headers={"Authorization": f"Bearer {raw}"}
    )
    assert token.status_code == 200


# --- Failures ---------------------------------------------------------------------------------


def test_a_kroger_timeout_answers_504_kroger_timeout(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.api_delay = 2.5  # the fixture's KROGER_TIMEOUT_SECONDS is 2
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "kroger_timeout"


def test_an_unreachable_kroger_answers_502_kroger_unreachable(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger, settings: Any
) -> None:
    url = fake_kroger.url
    fake_kroger.stop()
    settings.KROGER_BASE_URLS = {"production": url, "certification": url}
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "kroger_unreachable"
    # It never reached Kroger, so it is not counted against the budget.
    assert ApiBudget.objects.get(client=online.client, api="products").calls == 0
    assert sum(ApiUsage.objects.values_list("count", flat=True)) == 0


def test_a_kroger_whose_certificate_is_not_trusted_is_not_called_or_counted(
    client: Client,
    online: Connection,
    proxy_key: str,
    fake_kroger: FakeKroger,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # without the fake's test CA
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "kroger_unreachable"
    assert fake_kroger.api_requests == []
    assert ApiBudget.objects.get(client=online.client, api="products").calls == 0


def test_a_call_that_timed_out_stays_counted(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.api_delay = 2.5  # Kroger may have received and counted it
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 504
    assert ApiBudget.objects.get(client=online.client, api="products").calls == 1
    assert sum(ApiUsage.objects.values_list("count", flat=True)) == 1


def test_a_put_is_not_repeated_after_a_timeout(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.api_delay = 2.5
    items = {"items": [{"upc": "0001111041700", "quantity": 1}]}
    response = call(client, online, "cart/add", proxy_key, method="put", body=items)
    assert response.status_code == 504
    assert [r["method"] for r in fake_kroger.api_requests] == ["PUT"]


def test_a_put_is_not_repeated_after_a_server_error(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.fail_api(503)
    items = {"items": [{"upc": "0001111041700", "quantity": 1}]}
    response = call(client, online, "cart/add", proxy_key, method="put", body=items)
    assert response.status_code == 503
    assert len(fake_kroger.api_requests) == 1
    assert fake_kroger.cart == []


def test_a_never_authorized_connection_answers_409(
    client: Client, connection: Connection, fake_kroger: FakeKroger
) -> None:
    _, raw = ServiceKey.create_key(name="Early", connections=[connection])
    response = call(client, connection, "products", raw)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_authorized"
    assert fake_kroger.api_requests == []


# --- 401: renew once, repeat once -------------------------------------------------------------


def test_a_stale_token_is_renewed_once_and_the_call_repeated_once(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    stale = reloaded(online).access_token
    fake_kroger.expire_access_tokens()  # Kroger rejects it; the portal believes it valid
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 200
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    sent = [r["headers"]["Authorization"] for r in fake_kroger.api_requests]
    fresh = reloaded(online).access_token
    assert sent == [f"Bearer {stale}", f"Bearer {fresh}"]
    assert fresh != stale


def test_a_renewal_by_another_caller_after_the_key_was_read_is_used_not_repeated(
    online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    # The connection and its token are read with the key. Another caller renews between that
    # read and this request's call: the 401 on the old token must use that renewal.
    key = ServiceKey.authenticate_for(proxy_key, online.code)
    assert key is not None
    fake_kroger.expire_access_tokens()
    renewed = lifecycle.renew(reloaded(online), actor=lifecycle.Actor(label="another caller"))
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    answer = proxy.forward(
        key, str(online.code), proxy.Call(method="GET", path="products", query="", body=None)
    )
    assert answer.status == 200
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1  # no second renewal
    sent = [r["headers"]["Authorization"] for r in fake_kroger.api_requests]
    assert sent[-1] == f"Bearer {renewed.access_token}"


def test_a_put_rejected_with_401_is_repeated_once_with_the_renewed_token(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.expire_access_tokens()
    items = {"items": [{"upc": "0001111041700", "quantity": 3}]}
    response = call(client, online, "cart/add", proxy_key, method="put", body=items)
    assert response.status_code == 204
    assert fake_kroger.cart == items["items"]  # added once: the 401 added nothing
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1


def test_a_second_401_is_passed_through(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.fail_api(401, times=2)
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 401
    assert len(fake_kroger.api_requests) == 2
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1


def test_a_failed_renewal_answers_409_and_repeats_nothing(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.expire_access_tokens()
    fake_kroger.revoke_refresh_tokens()
    response = call(client, online, "products?filter.term=milk", proxy_key)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "needs_reauthorization"
    assert len(fake_kroger.api_requests) == 1


def test_an_expired_token_is_refreshed_before_the_call(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    Connection.objects.filter(pk=online.pk).update(
        token_expires_at=online.token_expires_at - timedelta(hours=1)  # type: ignore[operator]
    )
    response = call(client, online, "locations", proxy_key)
    assert response.status_code == 200
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    assert len(fake_kroger.api_requests) == 1


# --- Budgets ----------------------------------------------------------------------------------


def test_each_call_is_counted_per_client_api_and_key(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    for path in ("products?filter.term=milk", "products/0001111041700", "chains", "locations"):
        call(client, online, path, proxy_key)
    budgets = {b.api: b.calls for b in ApiBudget.objects.filter(client=online.client)}
    assert budgets == {"products": 2, "locations": 2}
    usage = {(u.api, u.service_key.name, u.count) for u in ApiUsage.objects.all()}  # type: ignore[union-attr]
    assert usage == {
        ("products", "Shopping list service", 2),
        ("locations", "Shopping list service", 2),
    }


def test_a_call_refused_before_it_is_sent_is_not_counted(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    call(client, online, "cart/add", proxy_key, method="put", body={"items": []})
    # The budget and the hour's usage row exist now: on PostgreSQL the next calls are counted
    # by the statement that reads the key, and each refusal below must take its count back.
    call(client, online, "cart/add", proxy_key, method="put", body="upc=1&qty=2")
    call(client, online, "cart/add", proxy_key, method="put", body={"upc": "\u0000"})
    call(client, online, "cart/add", proxy_key, headers={"X-Trace": "a\x01b"})
    assert len(fake_kroger.api_requests) == 1
    assert ApiBudget.objects.get(client=online.client, api="cart").calls == 1
    assert ApiUsage.objects.get(client=online.client, api="cart").count == 1


@pytest.mark.postgres
def test_the_key_statements_are_planned_once_per_database_connection(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    # Planning these statements cost the server more than running them: they are prepared
    # on the database connection, and later calls only execute them.
    raw = ServiceKey.create_key(name="Both", connections=[online], may_fetch_tokens=True)[1]
    token_url = f"/api/v1/connections/{online.code}/token"
    for _ in range(3):
        assert call(client, online, "products?filter.term=milk", raw).status_code == 200
        response = client.get(token_url, headers={"Authorization": f"Bearer {raw}"})
        assert response.status_code == 200
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE NOT from_sql")
        prepared = [row[0] for row in cursor.fetchall()]
    assert len(prepared) == 2, prepared
    assert any("connections_app_apibudget" in sql for sql in prepared)  # the proxy's
    assert any("connections_app_tokenhandout" in sql for sql in prepared)  # the token's


@pytest.mark.postgres
def test_a_call_with_budget_left_costs_one_statement(
    client: Client, online: Connection, proxy_key: str, fake_kroger: FakeKroger
) -> None:
    call(client, online, "products?filter.term=milk", proxy_key)  # makes the budget's rows
    call(client, online, "products?filter.term=milk", proxy_key)  # past last_used_at's write
    with CaptureQueriesContext(db_connection) as queries:
        response = call(client, online, "products?filter.term=eggs", proxy_key)
    assert response.status_code == 200
    assert len(queries) == 1, [query["sql"] for query in queries]
    assert ApiBudget.objects.get(client=online.client, api="products").calls == 3
    assert ApiUsage.objects.get(client=online.client, api="products").count == 3
