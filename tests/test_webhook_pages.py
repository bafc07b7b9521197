"""The "Webhooks" pages: administrators only; the secret shown once; test event; delivery log."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from standardwebhooks.webhooks import Webhook

from connections_app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tests.conftest import client_for
from tests.fakes.receiver import Receiver

pytestmark = pytest.mark.django_db


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    fake = Receiver().start()
    yield fake
    fake.stop()


@pytest.fixture
def endpoint(admin_user: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url="https://hooks.example.com/kroger",
        secret=WebhookEndpoint.new_secret(),
        created_by=admin_user,
    )


def shown_secret(html: str) -> str:
    found = re.search(r'<code id="webhook-secret"[^>]*>(whsec_[^<]+)</code>', html)
    assert found, "the secret is on the page"
    return found.group(1)


def test_only_administrators_reach_the_webhooks_pages(
    client: Client, owner: Any, teammate: Any, outsider: Any, endpoint: WebhookEndpoint
) -> None:
    urls = [
        "/webhooks/",
        "/webhooks/new/",
        f"/webhooks/{endpoint.code}/",
        f"/webhooks/{endpoint.code}/edit/",
        f"/webhooks/{endpoint.code}/roll-secret/",
        f"/webhooks/{endpoint.code}/delete/",
    ]
    for user in (owner, teammate, outsider):
        client_for(client, user)
        for url in urls:
            assert client.get(url).status_code == 403, (user, url)
        assert client.post(f"/webhooks/{endpoint.code}/test/").status_code == 403
    client.logout()
    assert client.get("/webhooks/").status_code == 302  # to sign-in


def test_the_navigation_shows_webhooks_to_administrators_only(
    client: Client, admin_user: Any, owner: Any
) -> None:
    assert ">Webhooks</a>" in client_for(client, admin_user).get("/").content.decode()
    assert ">Webhooks</a>" not in client_for(client, owner).get("/").content.decode()


def test_creating_an_endpoint_shows_its_secret_once(client: Client, admin_user: Any) -> None:
    client_for(client, admin_user)

    response = client.post(
        "/webhooks/new/",
        {
            "url": "https://hooks.example.com/kroger",
            "description": "On-call alerts",
            "format": "standard",
            "event_types": ["connection.offline", "connection.needs_reauthorization"],
        },
    )

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    secret = shown_secret(response.content.decode())
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret
    assert endpoint.events == "connection.offline connection.needs_reauthorization"
    assert endpoint.created_by == admin_user
    for page in ("/webhooks/", f"/webhooks/{endpoint.code}/", f"/webhooks/{endpoint.code}/edit/"):
        assert secret not in client.get(page).content.decode()


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://hooks.example.com/", "Enter an http:// or https:// URL."),
        ("not a url", "Enter a valid URL."),
        ("https://localhost:9000/hooks", "This URL points at this machine (localhost)."),
        ("http://169.254.169.254/latest", "169.254.169.254 is a link-local address"),
        ("https://10.0.0.8/hooks", "10.0.0.8 is a private address"),
    ],
)
def test_the_form_says_what_is_wrong_with_a_url(
    client: Client, admin_user: Any, url: str, error: str
) -> None:
    client_for(client, admin_user)

    response = client.post("/webhooks/new/", {"url": url, "format": "standard"})

    assert response.status_code == 200
    assert error in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_editing_changes_the_endpoint_and_disabling_stops_what_was_queued(
    client: Client, admin_user: Any, endpoint: WebhookEndpoint
) -> None:
    WebhookDelivery.objects.create(endpoint=endpoint, event="connection.deleted", payload="{}")
    client_for(client, admin_user)

    response = client.post(
        f"/webhooks/{endpoint.code}/edit/",
        {"url": "https://hooks.example.com/v2", "format": "slack", "event_types": []},
    )

    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.format, endpoint.events, endpoint.enabled) == (
        "https://hooks.example.com/v2",
        "slack",
        "",
        False,
    )
    assert endpoint.disabled_reason == "Disabled by an administrator."
    assert WebhookDelivery.objects.get().state == "failed"
    page = client.get(f"/webhooks/{endpoint.code}/").content.decode()
    assert "Disabled by an administrator." in page
    assert "Not sent: Disabled by an administrator." in page


def test_rolling_the_secret_shows_the_new_one_and_keeps_the_old_signing(
    client: Client, admin_user: Any, endpoint: WebhookEndpoint
) -> None:
    old = endpoint.secret
    client_for(client, admin_user)

    assert "Roll secret" in client.get(f"/webhooks/{endpoint.code}/roll-secret/").content.decode()
    response = client.post(f"/webhooks/{endpoint.code}/roll-secret/")

    new = shown_secret(response.content.decode())
    endpoint.refresh_from_db()
    assert (endpoint.secret, endpoint.previous_secret) == (new, old)
    assert endpoint.signing_secrets() == [new, old]
    assert (
        "the previous secret also signs until"
        in client.get(f"/webhooks/{endpoint.code}/").content.decode()
    )


def test_send_test_event_delivers_webhook_test_and_the_log_shows_it(
    client: Client, admin_user: Any, receiver: Receiver
) -> None:
    endpoint = WebhookEndpoint.objects.create(
        url=receiver.url(), secret=WebhookEndpoint.new_secret(), events="connection.deleted"
    )
    client_for(client, admin_user)

    response = client.post(f"/webhooks/{endpoint.code}/test/", follow=True)

    page = response.content.decode()
    assert "Test event delivered: the endpoint answered HTTP 200." in page
    [delivery] = receiver.received
    payload = Webhook(endpoint.secret).verify(delivery.body, delivery.headers)
    assert payload["type"] == "webhook.test"
    assert (
        payload["data"]["message"] == "Test event sent by admin@example.com from the Webhooks page."
    )
    attempt = WebhookAttempt.objects.get()
    assert (attempt.event, attempt.attempt, attempt.status_code) == ("webhook.test", 1, 200)
    assert re.search(r"<td>webhook.test</td>\s*<td>1</td>", page)


def test_a_failing_test_event_says_why_and_is_retried(
    client: Client, admin_user: Any, receiver: Receiver
) -> None:
    endpoint = WebhookEndpoint.objects.create(
        url=receiver.url(), secret=WebhookEndpoint.new_secret()
    )
    receiver.fail_next(503)
    client_for(client, admin_user)

    page = client.post(f"/webhooks/{endpoint.code}/test/", follow=True).content.decode()

    assert "Test event not delivered (HTTP 503). The portal retries it" in page
    assert "Failing" in page
    assert WebhookDelivery.objects.get().state == "pending"


def test_deleting_an_endpoint(client: Client, admin_user: Any, endpoint: WebhookEndpoint) -> None:
    client_for(client, admin_user)

    response = client.post(f"/webhooks/{endpoint.code}/delete/", follow=True)

    assert "deleted; it receives nothing more" in response.content.decode()
    assert not WebhookEndpoint.objects.exists()


def test_the_admin_shows_a_new_endpoints_secret_once(client: Client, admin_user: Any) -> None:
    client_for(client, admin_user)

    response = client.post(
        "/admin/connections_app/webhookendpoint/add/",
        {"url": "https://hooks.example.com/a", "description": "", "format": "standard"},
    )

    assert response.status_code == 200, response.content.decode()[:2000]
    html = response.content.decode()
    endpoint = WebhookEndpoint.objects.get()
    assert f'value="{endpoint.secret}"' in html
    change = client.get(f"/admin/connections_app/webhookendpoint/{endpoint.pk}/change/")
    assert endpoint.secret not in change.content.decode()


def test_the_list_counts_what_waits_and_what_failed(
    client: Client, admin_user: Any, endpoint: WebhookEndpoint
) -> None:
    for state in ("pending", "pending", "failed", "delivered"):
        WebhookDelivery.objects.create(
            endpoint=endpoint, event="connection.deleted", payload=json.dumps({}), state=state
        )
    client_for(client, admin_user)

    page = client.get("/webhooks/").content.decode()

    assert re.search(r"<td>2</td>\s*<td>1</td>", page)
    assert "https://hooks.example.com/kroger" in page
