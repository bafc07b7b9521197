"""A NUL byte anywhere in a request is a 400, never a 500 (PostgreSQL refuses NUL in text)."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app import consent
from connections_app.models import Connection, ServiceKey

pytestmark = pytest.mark.django_db

NUL = "%00"


@pytest.mark.parametrize(
    "path",
    [
        f"/?page={NUL}",
        f"/clients/?page=1{NUL}",
        f"/admin/connections_app/connection/?q=cart{NUL}",
        f"/admin/connections_app/connection/?status__exact={NUL}",
        f"/admin/connections_app/auditevent/?q={NUL}&action__exact=refreshed",
        f"/admin/connections_app/oauthclient/?environment__exact=production{NUL}",
        f"/accounts/login/?next=/{NUL}",
        f"/connections/{NUL}/",
    ],
)
def test_it_refuses_a_nul_in_the_address(client: Any, admin_user: Any, path: str) -> None:
    client.force_login(admin_user)
    response = client.get(path)
    assert response.status_code == 400
    assert "NUL character" in response.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        f"state={NUL}",
        f"state={{state}}&error=access_denied{NUL}",
        f"state={{state}}&error=server_error&error_description=down{NUL}",
        f"state={{state}}&code=abc{NUL}",
    ],
)
def test_the_oauth_callback_refuses_a_nul_in_its_parameters(
    client: Any, owner: Any, connection: Connection, query: str
) -> None:
    client.force_login(owner)
    attempt, state = consent.start_attempt(
        connection=connection, user=owner, redirect_uri="https://portal.test/oauth/callback/"
    )
    response = client.get("/oauth/callback/?" + query.replace("{state}", state))
    assert response.status_code == 400
    attempt.refresh_from_db()
    assert attempt.used_at is None  # nothing was done with it
    assert not connection.events.exists()


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/connections/new/", {"name": "Cart\x00", "action": "save"}),
        ("/accounts/login/", {"login": "owner@example.com\x00", "password": "x"}),
        ("/service-keys/new/", {"name": "Shop", "all_connections": "on\x00"}),
        ("/admin/connections_app/scope/add/", {"name\x00": "x"}),
    ],
)
def test_it_refuses_a_nul_in_a_form(client: Any, admin_user: Any, path: str, data: Any) -> None:
    client.force_login(admin_user)
    response = client.post(path, data)
    assert response.status_code == 400
    assert not ServiceKey.objects.exists()


def test_the_api_answers_a_nul_in_json(client: Any) -> None:
    response = client.get(f"/api/v1/connections/?x={NUL}", HTTP_AUTHORIZATION="Bearer kcp_x")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
