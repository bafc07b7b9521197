"""allauth's reauthentication ("confirm it is you") before sensitive changes."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import Group

from connections_app.access import EDITORS
from connections_app.models import Connection, OAuthClient, WebhookEndpoint
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reauthentication_on(settings: Any) -> None:
    settings.REAUTHENTICATE_SENSITIVE_CHANGES = True


@pytest.fixture
def endpoint(admin_user: Any) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url="https://hooks.example.com/kroger",
        secret=WebhookEndpoint.new_secret(),
        created_by=admin_user,
    )


def sensitive_pages(
    oauth_client: OAuthClient, connection: Connection, endpoint: WebhookEndpoint
) -> list[str]:
    return [
        f"/clients/{oauth_client.code}/edit/",
        f"/clients/{oauth_client.code}/delete/",
        f"/connections/{connection.code}/delete/",
        f"/connections/{connection.code}/disconnect/",
        "/service-keys/new/",
        "/webhooks/new/",
        f"/webhooks/{endpoint.code}/edit/",
        f"/webhooks/{endpoint.code}/roll-secret/",
        f"/webhooks/{endpoint.code}/delete/",
    ]


def test_each_sensitive_change_asks_to_confirm_it_is_me_first(
    client: Any,
    admin_user: Any,
    oauth_client: OAuthClient,
    connection: Connection,
    endpoint: WebhookEndpoint,
) -> None:
    client_for(client, admin_user)
    secret = endpoint.secret
    for path in sensitive_pages(oauth_client, connection, endpoint):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/reauthenticate/?next="), path
        assert client.post(path).status_code == 302, path
    assert OAuthClient.objects.filter(pk=oauth_client.pk).exists()
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret


def test_after_confirming_the_pages_open(
    client: Any,
    admin_user: Any,
    oauth_client: OAuthClient,
    connection: Connection,
    endpoint: WebhookEndpoint,
) -> None:
    client_for(client, admin_user)
    wrong = client.post("/accounts/reauthenticate/", {"password": "not-it"})
    assert wrong.status_code == 200
    assert client.get("/service-keys/new/").status_code == 302
    right = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert right.status_code == 302
    for path in sensitive_pages(oauth_client, connection, endpoint):
        assert client.get(path).status_code == 200, path


def test_rolling_a_webhook_secret_happens_once_confirmed(
    client: Any, admin_user: Any, endpoint: WebhookEndpoint
) -> None:
    """The press of "Roll secret" is kept while the person confirms, then carried out."""
    client_for(client, admin_user)
    secret = endpoint.secret
    roll = f"/webhooks/{endpoint.code}/roll-secret/"
    asked = client.post(roll)
    assert asked["Location"] == f"/accounts/reauthenticate/?next={roll.replace('/', '%2F')}"
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret == secret
    confirmed = client.post("/accounts/reauthenticate/", {"password": PASSWORD, "next": roll})
    assert confirmed.status_code == 200
    assert "whsec_" in confirmed.content.decode()
    assert WebhookEndpoint.objects.get(pk=endpoint.pk).secret != secret


def test_every_change_in_the_admin_asks_to_confirm_it_is_me_first(
    client: Any, admin_user: Any, teammate: Any
) -> None:
    client_for(client, admin_user)
    change = f"/admin/auth/user/{teammate.pk}/change/"
    assert client.get(change).status_code == 200  # reading needs no confirmation
    editors = Group.objects.get(name=EDITORS)
    data = {
        "username": teammate.username,
        "email": teammate.email,
        "is_active": "on",
        "groups": [str(editors.pk)],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
    }
    asked = client.post(change, data)
    assert asked.status_code == 302
    assert asked["Location"].startswith("/accounts/reauthenticate/?next=")
    assert not teammate.groups.filter(pk=editors.pk).exists()

    confirmed = client.post("/accounts/reauthenticate/", {"password": PASSWORD, "next": change})
    assert confirmed.status_code == 302
    assert teammate.groups.filter(pk=editors.pk).exists()


def test_signing_out_of_the_admin_asks_nothing(client: Any, admin_user: Any) -> None:
    client_for(client, admin_user)
    client.post("/admin/logout/")
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_viewing_needs_no_confirmation(client: Any, teammate: Any, connection: Connection) -> None:
    client_for(client, teammate)
    assert client.get(f"/connections/{connection.code}/").status_code == 200
    assert client.get("/clients/").status_code == 200


def test_adding_an_e_mail_address_asks_to_confirm_it_is_me_first(client: Any, owner: Any) -> None:
    """A new address could receive a password reset: a borrowed session must not add one."""
    client_for(client, owner)
    add = {"email": "new@elsewhere.example", "action_add": ""}
    asked = client.post("/accounts/email/", add)
    assert asked["Location"].startswith("/accounts/reauthenticate/?next=")
    assert not EmailAddress.objects.filter(email="new@elsewhere.example").exists()

    client.post("/accounts/reauthenticate/", {"password": PASSWORD, "next": "/accounts/email/"})
    assert EmailAddress.objects.filter(user=owner, email="new@elsewhere.example").exists()
