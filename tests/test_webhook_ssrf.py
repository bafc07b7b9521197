"""Deliveries go only to public addresses (unless WEBHOOK_ALLOW_PRIVATE), checked after DNS,
sent to the very address checked."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import transaction

from connections_app import webhooks
from connections_app.models import Connection, WebhookDelivery, WebhookEndpoint, WebhookEvent
from tests.fakes.receiver import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    fake = Receiver().start()
    yield fake
    fake.stop()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        ("https://127.0.0.1/hooks", "127.0.0.1, a loopback address"),
        ("https://127.8.9.10/hooks", "127.8.9.10, a loopback address"),
        ("https://[::1]/hooks", "::1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("https://[fe80::1]/hooks", "fe80::1, a link-local address"),
        ("https://10.1.2.3/hooks", "10.1.2.3, a private address"),
        ("https://172.16.0.9/hooks", "172.16.0.9, a private address"),
        ("https://192.168.1.20/hooks", "192.168.1.20, a private address"),
        ("https://[fd12:3456::1]/hooks", "fd12:3456::1, a private address"),
        ("https://0.0.0.0/hooks", "0.0.0.0, an unspecified address"),
        ("https://[::]/hooks", ":: resolves to ::, an unspecified address"),
        ("https://224.0.0.251/hooks", "224.0.0.251, a multicast address"),
        ("https://[ff02::1]/hooks", "ff02::1, a multicast address"),
        ("https://240.0.0.1/hooks", "240.0.0.1, a reserved address"),
        ("https://100.64.0.1/hooks", "100.64.0.1, not a public address"),
        ("https://[::ffff:127.0.0.1]/hooks", "::ffff:7f00:1, a loopback address"),
        ("https://[::ffff:169.254.169.254]/hooks", "a link-local address"),
        ("https://[::ffff:10.0.0.1]/hooks", "a private address"),
        ("https://localhost/hooks", "localhost resolves to"),
    ],
)
def test_it_refuses_addresses_that_are_not_public(url: str, refusal: str, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False

    with pytest.raises(webhooks.DeliveryRefused) as refused:
        webhooks.safe_post(url, b"{}", {})

    assert refusal in str(refused.value)
    assert "WEBHOOK_ALLOW_PRIVATE=true" in str(refused.value)


@pytest.mark.parametrize("url", ["ftp://example.com/hooks", "file:///etc/passwd", "https:///x"])
def test_it_refuses_urls_that_are_not_http(url: str) -> None:
    with pytest.raises(webhooks.DeliveryRefused, match="Only http:// and https://"):
        webhooks.safe_post(url, b"{}", {})


def test_public_addresses_are_allowed() -> None:
    import ipaddress

    for address in ("8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"):
        assert webhooks.address_refusal(ipaddress.ip_address(address)) == ""


def test_a_name_with_one_private_address_among_public_ones_is_refused(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False

    def getaddrinfo(host: str, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "hooks.example.test"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)

    with pytest.raises(webhooks.DeliveryRefused, match=r"resolves to 10\.0\.0\.5, a private"):
        webhooks.safe_post("https://hooks.example.test/in", b"{}", {})


def test_it_connects_to_the_address_it_checked_and_resolves_the_name_once(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """No DNS-rebinding window: the name is resolved once, for the check, and the connection
    goes to that address (urllib3 is handed the IP literal); TLS is still verified against
    the name."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    asked: list[str] = []
    real = socket.getaddrinfo

    def recording(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", recording)

    answer = webhooks.safe_post(receiver.url(host="localhost"), b"{}", {"X-Test": "1"})

    assert answer.status == 200
    assert asked.count("localhost") == 1
    assert set(asked) - {"localhost"} <= {"127.0.0.1", "::1"}
    assert receiver.received[0].headers["host"] == f"localhost:{receiver.port}"


@pytest.mark.django_db
def test_a_delivery_to_a_refused_address_is_logged_and_never_sent(
    receiver: Receiver, connection: Connection, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    WebhookEndpoint.objects.create(url=receiver.url(), secret=WebhookEndpoint.new_secret())
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_DELETED, connection)

    webhooks.deliver_due()

    assert receiver.received == []
    delivery = WebhookDelivery.objects.get()
    assert delivery.state == "pending"
    assert delivery.last_error.startswith("Not sent: 127.0.0.1 resolves to 127.0.0.1, a loopback")
    [attempt] = delivery.tries.all()
    assert attempt.status_code is None


@pytest.mark.django_db
def test_webhook_allow_private_lets_deliveries_reach_the_local_network(
    receiver: Receiver, connection: Connection, settings: Any
) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    WebhookEndpoint.objects.create(url=receiver.url(), secret=WebhookEndpoint.new_secret())
    with transaction.atomic():
        webhooks.emit_connection_event(WebhookEvent.CONNECTION_DELETED, connection)

    assert webhooks.deliver_due() == 1
    assert len(receiver.received) == 1


def test_tls_is_verified_against_the_url_host(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The test CA's certificate names 127.0.0.1 and localhost only: another name pointing at
    the same address fails verification even though the address is the one checked."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        return real("127.0.0.1" if host == "hooks.example.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)

    with pytest.raises(webhooks.DeliveryFailed, match="TLS failed"):
        webhooks.safe_post(receiver.url(host="hooks.example.test"), b"{}", {})
    assert receiver.received == []
