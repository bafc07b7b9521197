"""allauth's reauthentication ("confirm it is you") before sensitive changes."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import Connection, OAuthClient
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _reauthentication_on(settings: Any) -> None:
    settings.REAUTHENTICATE_SENSITIVE_CHANGES = True


def sensitive_pages(oauth_client: OAuthClient, connection: Connection) -> list[str]:
    return [
        f"/clients/{oauth_client.code}/edit/",
        f"/clients/{oauth_client.code}/delete/",
        f"/connections/{connection.code}/delete/",
        "/service-keys/new/",
    ]


def test_each_sensitive_change_asks_to_confirm_it_is_me_first(
    client: Any, admin_user: Any, oauth_client: OAuthClient, connection: Connection
) -> None:
    client_for(client, admin_user)
    for path in sensitive_pages(oauth_client, connection):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/accounts/reauthenticate/?next="), path
        assert client.post(path).status_code == 302, path
    assert OAuthClient.objects.filter(pk=oauth_client.pk).exists()
    assert Connection.objects.filter(pk=connection.pk).exists()


def test_after_confirming_the_pages_open(
    client: Any, admin_user: Any, oauth_client: OAuthClient, connection: Connection
) -> None:
    client_for(client, admin_user)
    wrong = client.post("/accounts/reauthenticate/", {"password": "not-it"})
    assert wrong.status_code == 200
    assert client.get("/service-keys/new/").status_code == 302
    right = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert right.status_code == 302
    for path in sensitive_pages(oauth_client, connection):
        assert client.get(path).status_code == 200, path


def test_viewing_needs_no_confirmation(client: Any, teammate: Any, connection: Connection) -> None:
    client_for(client, teammate)
    assert client.get(f"/connections/{connection.code}/").status_code == 200
    assert client.get("/clients/").status_code == 200
