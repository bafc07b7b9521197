"""A company's outgoing proxy (HTTPS_PROXY, NO_PROXY): the portal reaches Kroger through it,
for proxied calls and for token renewals alike, and says so when it cannot."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from connections_app.models import ApiBudget, ApiUsage, Connection, ServiceKey
from tests.connection_states import reloaded
from tests.fakes.connect_proxy import ConnectProxy
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db

PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy")


@pytest.fixture
def proxy_key(online: Connection) -> str:
    return ServiceKey.create_key(name="Shopping list service", connections=[online])[1]


@pytest.fixture
def egress(monkeypatch: pytest.MonkeyPatch) -> Iterator[ConnectProxy]:
    proxy = ConnectProxy(credentials="egress:s3cret").start()
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    address = urlsplit(proxy.url)
    monkeypatch.setenv("HTTPS_PROXY", f"http://egress:s3cret@{address.netloc}")
    yield proxy
    proxy.stop()


def kroger_address(fake: FakeKroger) -> str:
    return urlsplit(fake.url).netloc


def products(client: Client, connection: Connection, raw: str) -> Any:
    return client.get(
        f"/api/v1/connections/{connection.code}/kroger/products?filter.term=milk",
        headers={"Authorization": f"Bearer {raw}"},
    )


def test_proxied_calls_go_through_the_outgoing_proxy_on_one_tunnel(
    client: Client,
    online: Connection,
    proxy_key: str,
    fake_kroger: FakeKroger,
    egress: ConnectProxy,
) -> None:
    for _ in range(3):
        assert products(client, online, proxy_key).status_code == 200
    assert len(fake_kroger.api_requests) == 3
    assert egress.tunnels == [kroger_address(fake_kroger)]  # kept alive through the tunnel
    assert egress.refused == 0


def test_a_token_renewal_goes_through_the_outgoing_proxy(
    client: Client,
    online: Connection,
    proxy_key: str,
    fake_kroger: FakeKroger,
    egress: ConnectProxy,
) -> None:
    fake_kroger.expire_access_tokens()  # the proxied call gets 401: the portal renews
    assert products(client, online, proxy_key).status_code == 200
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    assert len(egress.tunnels) >= 2  # the renewal (requests) and the calls (the proxy's pool)
    assert set(egress.tunnels) == {kroger_address(fake_kroger)}


def test_no_proxy_sends_calls_straight_to_kroger(
    client: Client,
    online: Connection,
    proxy_key: str,
    fake_kroger: FakeKroger,
    egress: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    assert products(client, online, proxy_key).status_code == 200
    assert len(fake_kroger.api_requests) == 1
    assert egress.tunnels == []


def test_a_proxy_that_refuses_the_tunnel_is_named_and_the_call_not_counted(
    client: Client,
    online: Connection,
    proxy_key: str,
    fake_kroger: FakeKroger,
    egress: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", f"http://egress:wrong@{urlsplit(egress.url).netloc}")
    response = products(client, online, proxy_key)
    assert response.status_code == 502
    error = response.json()["error"]
    assert error["code"] == "kroger_unreachable"
    assert "outgoing proxy" in error["message"] and "HTTPS_PROXY" in error["message"]
    assert "wrong" not in response.content.decode()  # the proxy's password is never shown
    assert egress.refused == 1 and fake_kroger.api_requests == []
    # It never reached Kroger: nothing is spent from the budget or counted as used.
    assert ApiBudget.objects.get(client=online.client, api="products").calls == 0
    assert sum(ApiUsage.objects.values_list("count", flat=True)) == 0


def test_a_renewal_the_proxy_refuses_leaves_the_grant_usable(
    online: Connection,
    fake_kroger: FakeKroger,
    egress: ConnectProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connections_app import lifecycle

    refresh = reloaded(online).refresh_token
    monkeypatch.setenv("HTTPS_PROXY", f"http://egress:wrong@{urlsplit(egress.url).netloc}")
    with pytest.raises(lifecycle.TokenUnavailable) as failed:
        lifecycle.renew(reloaded(online), actor=lifecycle.Actor(label="test"))
    assert "outgoing proxy" in failed.value.reason
    assert fake_kroger.token_calls_for("refresh_token") == []
    assert reloaded(online).refresh_token == refresh  # nothing was sent, nothing was lost
