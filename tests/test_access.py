"""Each role sees and does exactly what it may on the list pages and object lookups."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.http import Http404

from connections_app.access import get_client_for_user, get_connection_for_user

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("who", ["admin_user", "owner", "teammate"])
def test_members_see_the_connection_list(
    client: Any, request: Any, who: str, connection: Any
) -> None:
    client.force_login(request.getfixturevalue(who))
    response = client.get("/")
    assert response.status_code == 200
    assert "Store cart" in response.content.decode()


def test_an_outsider_sees_nothing(client: Any, outsider: Any, connection: Any) -> None:
    client.force_login(outsider)
    assert client.get("/").status_code == 403
    assert client.get("/clients/").status_code == 403
    with pytest.raises(Http404):
        get_connection_for_user(outsider, connection.code)


def test_anonymous_visitors_are_sent_to_sign_in(client: Any) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_a_viewer_may_look_but_not_change(teammate: Any, connection: Any) -> None:
    assert get_connection_for_user(teammate, connection.code) == connection
    with pytest.raises(PermissionDenied):
        get_connection_for_user(teammate, connection.code, edit=True)
    with pytest.raises(PermissionDenied):
        get_client_for_user(teammate, connection.client.code, edit=True)


@pytest.mark.parametrize("who", ["admin_user", "owner"])
def test_editors_and_admins_may_change(request: Any, who: str, connection: Any) -> None:
    user = request.getfixturevalue(who)
    assert get_connection_for_user(user, connection.code, edit=True) == connection
    assert get_client_for_user(user, connection.client.code, edit=True) == connection.client


def test_an_unknown_or_malformed_code_is_a_404(owner: Any) -> None:
    for code in ["3f0c8a52-9b7e-4a53-bf5d-0f4a4e1d2c11", "not-a-uuid"]:
        with pytest.raises(Http404):
            get_connection_for_user(owner, code)


def test_healthz_reports_the_database(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "encryption_keys": "ok"}
