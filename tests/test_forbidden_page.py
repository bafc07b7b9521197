"""The 403 page: what was refused, which role it needs, and whom to ask."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import Connection
from tests.accessibility import assert_accessible
from tests.conftest import client_for, sign_in


@pytest.mark.django_db
def test_it_tells_a_viewer_that_editing_needs_editors_and_names_the_administrators(
    client: Any, teammate: Any, admin_user: Any, connection: Connection
) -> None:
    response = client_for(client, teammate).get(f"/connections/{connection.code}/edit/")

    assert response.status_code == 403
    page = " ".join(response.content.decode().split())
    assert "Only editors can change connections and OAuth 2.0 clients." in page
    assert "It needs the <strong>Editors</strong> role." in page
    assert "You are in <strong>Viewers</strong>." in page
    assert "Ask an administrator to add you to Editors in the admin:" in page
    assert '<a href="mailto:admin@example.com">admin@example.com</a>' in page
    assert 'href="/">Back to connections</a>' in page
    assert '<link rel="stylesheet" href="/static/css/app.css">' in page


@pytest.mark.django_db
def test_it_tells_a_member_without_a_role_that_they_need_viewers(
    client: Any, outsider: Any, admin_user: Any
) -> None:
    response = client_for(client, outsider).get("/")

    assert response.status_code == 403
    page = " ".join(response.content.decode().split())
    assert "It needs the <strong>Viewers</strong> role." in page
    assert "You have no role yet." in page
    assert "admin@example.com" in page
    assert "Back to connections" not in page  # it would lead straight back here


@pytest.mark.django_db
def test_it_tells_an_editor_that_service_keys_need_an_administrator(
    client: Any, owner: Any, admin_user: Any
) -> None:
    response = client_for(client, owner).get("/service-keys/")

    assert response.status_code == 403
    page = " ".join(response.content.decode().split())
    assert "It needs the <strong>Administrators</strong> role." in page
    assert "You are in <strong>Editors</strong>." in page
    assert "Ask an administrator to make you one:" in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_403_page_is_styled_and_accessible(
    page: Any, teammate: Any, admin_user: Any, connection: Connection
) -> None:
    sign_in(page, teammate)
    response = page.goto("/connections/new/")

    assert response.status == 403
    heading = page.get_by_role("heading", name="You do not have access to this page")
    assert heading.is_visible()
    assert page.get_by_role("link", name="admin@example.com").get_attribute("href") == (
        "mailto:admin@example.com"
    )
    assert page.locator(".card").count() == 1  # the portal's stylesheet and layout
    assert_accessible(page)
