"""OAuth 2.0 client pages: list, create, edit, delete, and the panel's dialog and return trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from connections_app.models import (
    AuditAction,
    AuditEvent,
    Connection,
    Environment,
    GrantType,
    OAuthClient,
)
from tests.conftest import CLIENT_SECRET
from tests.html_forms import checked_values, input_value, selected_option

pytestmark = pytest.mark.django_db

NEW_SECRET = "new-secret-Hh3Jk8Lp0Qw5"


def client_data(**overrides: str) -> dict[str, str]:
    data = {
        "name": "Pantry app",
        "environment": "certification",
        "grant_type": "authorization_code",
        "client_id": "pantry-app-42",
        "client_secret": NEW_SECRET,
    }
    data.update(overrides)
    return data


def every_page(oauth_client: OAuthClient) -> list[str]:
    code = oauth_client.code
    return ["/clients/new/", f"/clients/{code}/edit/", f"/clients/{code}/delete/"]


# --- Access ----------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["admin_user", "owner", "teammate"])
def test_members_see_every_client_without_its_secret(
    client: Any, request: Any, who: str, oauth_client: OAuthClient
) -> None:
    client.force_login(request.getfixturevalue(who))
    page = client.get("/clients/").content.decode()
    assert "Shopping app" in page
    assert "shopping-app-1234" in page
    assert oauth_client.secret_display in page
    assert CLIENT_SECRET not in page


def test_a_viewer_sees_no_buttons_to_change_clients(
    client: Any, teammate: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(teammate)
    page = client.get("/clients/").content.decode()
    assert "Add OAuth 2.0 client" not in page
    assert f"/clients/{oauth_client.code}/edit/" not in page


def test_an_editor_sees_buttons_to_change_clients(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    page = client.get("/clients/").content.decode()
    assert "Add OAuth 2.0 client" in page
    assert f"/clients/{oauth_client.code}/edit/" in page


def test_a_viewer_cannot_create_edit_or_delete_clients(
    client: Any, teammate: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(teammate)
    for url in every_page(oauth_client):
        assert client.get(url).status_code == 403
        assert client.post(url, client_data()).status_code == 403
    assert OAuthClient.objects.count() == 1
    assert OAuthClient.objects.get().name == "Shopping app"


def test_an_outsider_cannot_reach_client_pages(
    client: Any, outsider: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(outsider)
    assert client.get("/clients/new/").status_code == 403
    for url in every_page(oauth_client)[1:]:
        assert client.get(url).status_code == 404
        assert client.post(url, client_data()).status_code == 404
    assert OAuthClient.objects.count() == 1


def test_anonymous_visitors_are_sent_to_sign_in(client: Any, oauth_client: OAuthClient) -> None:
    for url in every_page(oauth_client):
        response = client.get(url)
        assert response.status_code == 302
        assert "/accounts/login/" in response["Location"]


# --- Create ----------------------------------------------------------------------------------


def test_the_form_shows_the_redirect_uri_and_how_to_get_a_client(client: Any, owner: Any) -> None:
    client.force_login(owner)
    page = client.get("/clients/new/").content.decode()
    for label in ("Name", "Environment", "Grant type", "Client ID", "Client secret"):
        assert f'>{label} <span class="required-mark"' in page
    assert 'type="password" name="client_secret"' in page
    assert settings.OAUTH_REDIRECT_URI in page
    assert "https://portal.test/oauth/callback/" in page
    assert '>Copy<span class="visually-hidden"> the redirect URI</span></button>' in page
    assert "Manage &gt; Apps &gt; Register" in page
    assert "Kroger support issues" in page
    assert "Production (https://api.kroger.com/v1/)" in page
    assert "Certification (https://api-ce.kroger.com/v1/)" in page


def test_an_editor_creates_a_client_with_an_encrypted_secret(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.post("/clients/new/", client_data(), follow=True)
    assert "OAuth 2.0 client “Pantry app” created." in response.content.decode()
    created = OAuthClient.objects.get(name="Pantry app")
    assert created.environment == Environment.CERTIFICATION
    assert created.grant_type == GrantType.AUTHORIZATION_CODE
    assert created.client_secret == NEW_SECRET
    assert created.created_by == owner
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CREATED)
    assert event.actor == owner
    assert event.client == created
    assert NEW_SECRET not in event.detail


def test_a_client_needs_every_field(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.post("/clients/new/", {})
    assert response.status_code == 400
    assert (
        response.content.decode().count("<li>This field is required.</li>") == 5
    )  # beside each field
    assert not OAuthClient.objects.exists()


def test_a_taken_client_name_is_refused_clearly(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    response = client.post("/clients/new/", client_data(name="Shopping app"))
    assert response.status_code == 400
    assert "An OAuth 2.0 client with this name already exists." in response.content.decode()
    assert OAuthClient.objects.count() == 1


def test_the_dialog_gets_the_bare_form_and_json_on_success(client: Any, owner: Any) -> None:
    client.force_login(owner)
    form = client.get("/clients/new/?dialog=1").content.decode()
    assert "<html" not in form
    assert 'action="/clients/new/?dialog=1"' in form
    assert "data-client-dialog-close" in form
    response = client.post("/clients/new/?dialog=1", client_data())
    assert response.status_code == 201
    created = OAuthClient.objects.get(name="Pantry app")
    assert json.loads(response.content) == {
        "code": str(created.code),
        "name": "Pantry app",
        "environment": "certification",
        "grant_type": "authorization_code",
    }


def test_the_dialog_gets_the_form_back_with_errors(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.post("/clients/new/?dialog=1", client_data(client_id=""))
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "<html" not in page
    assert "This field is required." in page
    assert NEW_SECRET not in page  # a password input never echoes its value


# --- Edit ------------------------------------------------------------------------------------


def test_the_edit_form_shows_only_that_a_secret_is_set(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    page = client.get(f"/clients/{oauth_client.code}/edit/").content.decode()
    assert CLIENT_SECRET not in page
    assert oauth_client.secret_display in page
    assert "Leave blank to keep the stored secret" in page
    assert 'value="shopping-app-1234"' in page


def test_a_blank_secret_keeps_the_stored_one(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = client_data(name="Shopping app 2", environment="production", client_secret="")
    response = client.post(f"/clients/{oauth_client.code}/edit/", data)
    assert response.status_code == 302
    oauth_client.refresh_from_db()
    assert oauth_client.name == "Shopping app 2"
    assert oauth_client.client_secret == CLIENT_SECRET
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CHANGED)
    assert event.detail == "Changed: Name, Client ID"


def test_a_new_secret_replaces_the_stored_one_and_the_audit_names_it_only(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = client_data(name="Shopping app", environment="production", client_id="shopping-app-1234")
    client.post(f"/clients/{oauth_client.code}/edit/", data)
    oauth_client.refresh_from_db()
    assert oauth_client.client_secret == NEW_SECRET
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CHANGED)
    assert event.detail == "Changed: Client secret"
    assert NEW_SECRET not in event.detail
    assert CLIENT_SECRET not in event.detail


def test_a_client_in_use_keeps_its_environment_and_grant_type(
    client: Any, owner: Any, oauth_client: OAuthClient, connection: Any
) -> None:
    Connection.objects.create(
        name="Pantry", environment=Environment.PRODUCTION, client=oauth_client
    )
    client.force_login(owner)
    url = f"/clients/{oauth_client.code}/edit/"
    data = client_data(name="Shopping app", client_id="shopping-app-1234", client_secret="")
    response = client.post(url, data)
    assert response.status_code == 400
    assert (
        "The OAuth 2.0 client “Shopping app” is used by connections Pantry, Store cart: its "
        "environment cannot change while they use it." in response.content.decode()
    )
    data.update(environment="production", grant_type="client_credentials")
    response = client.post(url, data)
    assert response.status_code == 400
    assert "its grant type cannot change while they use it." in response.content.decode()
    oauth_client.refresh_from_db()
    assert (oauth_client.environment, oauth_client.grant_type) == (
        "production",
        "authorization_code",
    )
    assert not AuditEvent.objects.filter(action=AuditAction.CLIENT_CHANGED).exists()


def test_an_unused_client_may_change_its_environment_and_grant_type(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = client_data(
        name="Shopping app",
        client_id="shopping-app-1234",
        client_secret="",
        grant_type="client_credentials",
    )
    assert client.post(f"/clients/{oauth_client.code}/edit/", data).status_code == 302
    oauth_client.refresh_from_db()
    assert (oauth_client.environment, oauth_client.grant_type) == (
        "certification",
        "client_credentials",
    )


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("client_id", "pantry app", "The client ID can hold only printable ASCII characters"),
        ("client_id", "pantry-\u00e9", "The client ID can hold only printable ASCII characters"),
        ("client_secret", "s3cret\u20ac", "The client secret can hold only printable ASCII"),
        ("client_secret", "two words", "The client secret can hold only printable ASCII"),
    ],
)
def test_client_credentials_must_be_printable_ascii_without_spaces(
    client: Any, owner: Any, field: str, value: str, message: str
) -> None:
    client.force_login(owner)
    response = client.post("/clients/new/", client_data(**{field: value}))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "HTTP Basic authentication cannot carry other characters" in response.content.decode()
    assert not OAuthClient.objects.exists()


# --- Delete ----------------------------------------------------------------------------------


def test_an_unused_client_is_deleted_after_confirmation(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    page = client.get(f"/clients/{cc_client.code}/delete/").content.decode()
    assert "Delete OAuth 2.0 client “Catalogue app”?" in page
    response = client.post(f"/clients/{cc_client.code}/delete/", follow=True)
    assert "OAuth 2.0 client “Catalogue app” deleted." in response.content.decode()
    assert not OAuthClient.objects.filter(pk=cc_client.pk).exists()
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_DELETED)
    assert event.subject == "Catalogue app"


def test_a_client_in_use_is_not_deleted(
    client: Any, owner: Any, oauth_client: OAuthClient, connection: Any
) -> None:
    client.force_login(owner)
    refusal = (
        "The OAuth 2.0 client “Shopping app” cannot be deleted while connections use it: "
        "Store cart."
    )
    page = client.get(f"/clients/{oauth_client.code}/delete/").content.decode()
    assert refusal in page
    assert ">Delete</button>" not in page
    response = client.post(f"/clients/{oauth_client.code}/delete/", follow=True)
    assert refusal in response.content.decode()
    assert OAuthClient.objects.filter(pk=oauth_client.pk).exists()
    assert not AuditEvent.objects.filter(action=AuditAction.CLIENT_DELETED).exists()


# --- The panel's trip to the client form without JavaScript ----------------------------------


def test_adding_a_client_from_the_panel_returns_to_it_with_the_input_kept(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    panel = {
        "name": "Weekly shop",
        "environment": "production",
        "client": str(oauth_client.code),
        "scopes": ["product.compact"],
        "banner": "ralphs",
        "action": "add_client",
    }
    response = client.post("/connections/new/", panel)
    assert response["Location"] == "/clients/new/?next=panel"
    form = client.get(response["Location"]).content.decode()
    assert 'action="/clients/new/?next=panel"' in form
    assert 'href="/connections/new/?restore=1"' in form  # Cancel goes back to the panel
    response = client.post("/clients/new/?next=panel", client_data())
    assert response["Location"] == "/connections/new/?restore=1"
    page = client.get(response["Location"]).content.decode()
    created = OAuthClient.objects.get(name="Pantry app")
    assert input_value(page, "name") == "Weekly shop"
    chosen = selected_option(page, "client")
    assert chosen is not None
    assert chosen["value"] == str(created.code)
    assert chosen["data-environment"] == "certification"
    assert chosen["text"] == "Pantry app"
    assert (selected_option(page, "environment") or {}).get("value") == "certification"
    assert checked_values(page, "scopes") == ["product.compact"]
    assert (selected_option(page, "banner") or {}).get("value") == "ralphs"
    # The kept input is used once.
    again = client.get("/connections/new/?restore=1").content.decode()
    assert input_value(again, "name") is None


def test_editing_the_chosen_client_from_the_panel_returns_to_it(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    panel = {"name": "Weekly shop", "environment": "production", "client": str(oauth_client.code)}
    response = client.post("/connections/new/", {**panel, "action": "edit_client"})
    assert response["Location"] == f"/clients/{oauth_client.code}/edit/?next=panel"
    data = client_data(name="Shopping app v2", environment="production", client_secret="")
    response = client.post(response["Location"], data)
    assert response["Location"] == "/connections/new/?restore=1"
    page = client.get(response["Location"]).content.decode()
    assert input_value(page, "name") == "Weekly shop"
    assert (selected_option(page, "client") or {}).get("text") == "Shopping app v2"


def test_editing_without_a_chosen_client_says_so(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.post(
        "/connections/new/", {"name": "Weekly shop", "action": "edit_client"}, follow=True
    )
    page = response.content.decode()
    assert "Choose an OAuth 2.0 client to edit." in page
    assert input_value(page, "name") == "Weekly shop"
