"""What a newcomer meets on empty pages: the three steps, the redirect URI, the client help."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

from connections_app.models import OAuthClient
from tests.accessibility import assert_accessible
from tests.conftest import client_for, sign_in


@pytest.mark.django_db
def test_the_empty_connections_page_shows_the_three_steps_with_the_redirect_uri(
    client: Any, owner: Any, settings: Any
) -> None:
    page = " ".join(client_for(client, owner).get("/").content.decode().split())
    assert "Connect your app to Kroger in three steps" in page
    assert "<strong>Register the app at Kroger</strong>" in page
    assert (
        '<code id="redirect-uri" aria-labelledby="redirect-uri-label">'
        f"{settings.OAUTH_REDIRECT_URI}</code>" in page
    )
    assert '<a href="/clients/new/">Add OAuth 2.0 client</a>' in page
    assert "Create your first connection" not in page.split("three steps")[1]


@pytest.mark.django_db
def test_with_a_client_the_first_two_steps_are_done(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    page = " ".join(client_for(client, owner).get("/").content.decode().split())
    assert page.count('<li class="done">') == 2
    assert '<a href="/connections/new/">Create your first connection</a> </li>' in page


@pytest.mark.django_db
def test_a_viewer_is_told_why_there_are_no_buttons(
    client: Any, teammate: Any, oauth_client: OAuthClient, connection: Any
) -> None:
    for url in ("/", "/clients/"):
        page = " ".join(client_for(client, teammate).get(url).content.decode().split())
        assert "need the <strong>Editors</strong> role. Ask an administrator" in page
        assert "Create connection</a>" not in page
    editor_page = client_for(client, connection.created_by).get("/").content.decode()
    assert "Ask an administrator to add you to Editors" not in editor_page


@pytest.mark.django_db
def test_the_clients_page_shows_the_redirect_uri(client: Any, teammate: Any, settings: Any) -> None:
    page = client_for(client, teammate).get("/clients/").content.decode()
    assert f">{settings.OAUTH_REDIRECT_URI}</code>" in page
    assert 'data-copy-target="redirect-uri"' in page


@pytest.mark.django_db
def test_the_client_help_is_above_the_fields_and_open_until_a_client_exists(
    client: Any, owner: Any
) -> None:
    page = client_for(client, owner).get("/clients/new/").content.decode()
    assert '<details class="steps" open>' in page
    assert page.index("How to get a client ID and secret") < page.index('name="client_id"')
    OAuthClient.objects.create(
        name="Other",
        environment="production",
        grant_type="authorization_code",
        client_id="other-1",
        client_secret="s" * 20,
    )
    page = client.get("/clients/new/").content.decode()
    assert '<details class="steps">' in page


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_newcomer_copies_the_redirect_uri_from_the_empty_connections_page(
    page: Any, owner: Any, live_server: Any
) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, owner)
    page.goto("/")
    assert_accessible(page)
    page.get_by_role("button", name="Copy the redirect URI").click()
    expect(page.get_by_text("Copied.")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == f"{live_server.url}/oauth/callback/"
    page.get_by_role("link", name="Add OAuth 2.0 client").click()
    expect(page.get_by_text("Sign in at developer.kroger.com")).to_be_visible()  # open
    assert_accessible(page)
