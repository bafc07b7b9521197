"""A browser at another address than SITE_URL is sent there before any authorization starts:
Kroger returns to SITE_URL, where that browser has no session, and the consent would be lost."""

from __future__ import annotations

import re
from typing import Any

import pytest

from connections_app.models import AuthorizationAttempt, Connection
from tests.accessibility import assert_accessible
from tests.conftest import client_for, sign_in
from tests.fakes.fake_kroger import FakeKroger


@pytest.mark.django_db
def test_it_starts_no_authorization_from_another_address(
    client: Any, owner: Any, connection: Connection, settings: Any
) -> None:
    settings.SITE_URL = "http://127.0.0.1:8000"
    client_for(client, owner)

    response = client.post(
        f"/connections/{connection.code}/authorize/", HTTP_HOST="localhost:8000", follow=True
    )

    page = response.content.decode()
    assert "You are using the portal at localhost:8000, but its address is" in page
    assert "where this browser is not signed in, so the authorization would be lost" in page
    assert f'<a href="http://127.0.0.1:8000/connections/{connection.code}/">' in page
    assert not AuthorizationAttempt.objects.exists()


@pytest.mark.django_db
def test_the_same_host_and_port_may_authorize_over_either_scheme(
    client: Any, owner: Any, connection: Connection, settings: Any, fake_kroger: FakeKroger
) -> None:
    settings.SITE_URL = "https://portal.example"
    settings.ALLOWED_HOSTS = ["portal.example"]
    client_for(client, owner)
    page = client.get(f"/connections/{connection.code}/", HTTP_HOST="portal.example:443")
    assert "Continue at" not in page.content.decode()

    response = client.post(f"/connections/{connection.code}/authorize/", HTTP_HOST="portal.example")

    assert response.status_code == 302
    assert response["Location"].startswith(fake_kroger.url)
    assert AuthorizationAttempt.objects.count() == 1


@pytest.mark.django_db
def test_another_port_is_another_address(
    client: Any, owner: Any, connection: Connection, settings: Any
) -> None:
    settings.SITE_URL = "http://127.0.0.1:8000"
    client_for(client, owner)
    page = client.get("/", HTTP_HOST="127.0.0.1:8001").content.decode()
    assert '<a href="http://127.0.0.1:8000/">Continue at http://127.0.0.1:8000</a>' in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_browser_at_localhost_is_sent_to_the_site_url_host_and_authorizes_there(
    page: Any,
    live_server: Any,
    settings: Any,
    owner: Any,
    connection: Connection,
    fake_kroger: FakeKroger,
) -> None:
    port = live_server.url.rsplit(":", 1)[1]
    site_url = f"http://127.0.0.1:{port}"
    settings.SITE_URL = site_url
    settings.OAUTH_REDIRECT_URI = f"{site_url}/oauth/callback/"
    settings.CSRF_TRUSTED_ORIGINS = [site_url]
    fake_kroger.register_client(
        connection.client.client_id,
        connection.client.client_secret,
        {"product.compact", "cart.basic:write"},
    )
    sign_in(page, owner)  # at http://localhost:<port>, the live server's own name
    page.goto(f"/connections/{connection.code}/")
    assert page.url.startswith("http://localhost:")
    assert_accessible(page)

    page.get_by_role("button", name="Authorize").click()
    page.get_by_text("so the authorization would be lost").wait_for()
    assert not AuthorizationAttempt.objects.exists()
    assert fake_kroger.authorize_requests == []

    page.get_by_role("link", name=f"Continue at {site_url}").first.click()
    page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/accounts/login/"))
    sign_in_here(page, owner)
    page.wait_for_url(f"{site_url}/connections/{connection.code}/")
    assert page.get_by_text("Continue at").count() == 0
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(re.compile(r"/v1/connect/oauth2/authorize\?"))
    page.get_by_role("button", name="Accept").click()
    page.get_by_text("is authorized and Online").wait_for()
    assert page.url.startswith(site_url)


def sign_in_here(page: Any, user: Any) -> None:
    from tests.conftest import PASSWORD

    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
