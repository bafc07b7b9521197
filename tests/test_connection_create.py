"""The "Create connection" panel: its fields, rules, buttons and who may use it."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse

from connections_app import views
from connections_app.models import AuditAction, AuditEvent, Connection, OAuthClient, Scope
from tests.html_forms import options, read, selected_option

pytestmark = pytest.mark.django_db


def panel_data(client: OAuthClient, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "Weekly shop",
        "environment": client.environment,
        "client": str(client.code),
        "scopes": ["product.compact", "cart.basic:write"],
        "action": "save",
    }
    data.update(overrides)
    return data


def test_the_panel_has_the_fields_and_buttons_users_know(
    client: Any, owner: Any, oauth_client: OAuthClient, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    page = client.get("/connections/new/").content.decode()
    for label, target in (
        ("Name your connection", "id_name"),
        ("Environment", "id_environment"),
        ("OAuth 2.0 client", "id_client"),
    ):
        assert f'<label for="{target}">{label} <span class="required-mark"' in page
    assert '<legend>Scopes <span class="required-mark"' in page
    assert [(o["value"], o["text"]) for o in options(page, "environment")] == [
        ("production", "Production (https://api.kroger.com/v1/)"),
        ("certification", "Certification (https://api-ce.kroger.com/v1/)"),
    ]
    clients = {o["text"]: o for o in options(page, "client") if o["value"]}
    assert clients["Shopping app"]["data-environment"] == "production"
    assert clients["Shopping app"]["data-grant-type"] == "authorization_code"
    assert clients["Catalogue app"]["data-environment"] == "certification"
    assert clients["Catalogue app"]["data-grant-type"] == "client_credentials"
    assert 'aria-label="Add OAuth 2.0 client"' in page
    assert 'aria-label="Edit OAuth 2.0 client"' in page
    # "Save & authorize" is the primary action, and Enter's (the form's first submit button).
    buttons = [(b.get("value"), b.get("class")) for b in read(page).buttons if b.get("value")]
    assert buttons[0] == ("authorize", "default-submit")
    assert ("authorize", "primary") in buttons
    assert ("save", None) in buttons


def test_the_environment_shows_the_configured_base_url(
    client: Any, owner: Any, settings: Any
) -> None:
    settings.KROGER_BASE_URLS = {
        "production": "https://127.0.0.1:9999/v1/",
        "certification": "https://api-ce.kroger.com/v1/",
    }
    client.force_login(owner)
    page = client.get("/connections/new/").content.decode()
    assert "Production (https://127.0.0.1:9999/v1/)" in page


def test_an_editor_creates_a_connection(client: Any, owner: Any, oauth_client: OAuthClient) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client), follow=True)
    created = Connection.objects.get(name="Weekly shop")
    assert response.redirect_chain[-1][0] == f"/connections/{created.code}/"
    assert "Connection “Weekly shop” created." in response.content.decode()
    assert created.client == oauth_client
    assert created.environment == "production"
    assert created.scope_string() == "cart.basic:write product.compact"
    assert created.created_by == owner
    assert created.status == "not_authorized"
    event = AuditEvent.objects.get(action=AuditAction.CONNECTION_CREATED)
    assert (event.actor, event.connection) == (owner, created)
    assert "cart.basic:write product.compact" in event.detail


def test_save_and_authorize_saves_then_starts_the_authorization(
    client: Any, owner: Any, oauth_client: OAuthClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Connection] = []

    def start(request: HttpRequest, connection: Connection) -> HttpResponse:
        started.append(connection)
        return HttpResponse("authorizing")

    monkeypatch.setattr(views, "start_authorization", start)
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client, action="authorize"))
    assert response.content == b"authorizing"
    assert started == [Connection.objects.get(name="Weekly shop")]


def test_save_does_not_start_the_authorization(
    client: Any, owner: Any, oauth_client: OAuthClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(views, "start_authorization", None)  # would fail if called
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client))
    assert response.status_code == 302
    assert Connection.objects.get().status == "not_authorized"


def test_a_taken_name_is_refused_clearly(
    client: Any, owner: Any, oauth_client: OAuthClient, connection: Connection
) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client, name="Store cart"))
    assert response.status_code == 400
    page = response.content.decode()
    assert "A connection with this name already exists. Choose another name." in page
    assert page.index("already exists") < page.index('id="id_name"')  # next to its field
    assert Connection.objects.count() == 1


def test_every_field_is_required(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", {"action": "save"})
    assert response.status_code == 400
    page = response.content.decode()
    assert page.count("<li>This field is required.</li>") == 3  # name, environment, client
    assert "Choose at least one scope." in page
    assert not Connection.objects.exists()


def test_the_client_must_be_registered_for_the_environment(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = panel_data(cc_client, environment="production", scopes=["product.compact"])
    response = client.post("/connections/new/", data)
    assert response.status_code == 400
    assert (
        "The OAuth 2.0 client Catalogue app is registered for Certification: choose a client "
        "registered for Production, or change the environment." in response.content.decode()
    )
    assert not Connection.objects.exists()


def test_an_invalid_submission_keeps_what_was_typed(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client, scopes=[]))
    page = response.content.decode()
    assert 'value="Weekly shop"' in page
    assert "Choose at least one scope." in page


def test_a_viewer_cannot_create_connections(
    client: Any, teammate: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(teammate)
    assert client.get("/connections/new/").status_code == 403
    assert client.post("/connections/new/", panel_data(oauth_client)).status_code == 403
    response = client.post("/connections/new/", panel_data(oauth_client, action="add_client"))
    assert response.status_code == 403
    assert not Connection.objects.exists()


def test_an_outsider_cannot_create_connections(
    client: Any, outsider: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(outsider)
    assert client.get("/connections/new/").status_code == 403
    assert client.post("/connections/new/", panel_data(oauth_client)).status_code == 403
    assert not Connection.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client: Any, oauth_client: OAuthClient) -> None:
    response = client.post("/connections/new/", panel_data(oauth_client))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert not Connection.objects.exists()


def test_admins_create_connections_too(
    client: Any, admin_user: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    response = client.post("/connections/new/", panel_data(oauth_client))
    assert response.status_code == 302
    assert Connection.objects.get().created_by == admin_user


def test_a_forged_client_value_is_an_error_not_a_crash(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = {**panel_data(oauth_client), "client": "not-a-uuid"}
    response = client.post("/connections/new/", data)
    assert response.status_code == 400
    assert "is not a valid UUID." in response.content.decode()


def test_the_panel_offers_the_kroger_banners_with_kroger_by_default(
    client: Any, owner: Any
) -> None:
    client.force_login(owner)
    page = client.get("/connections/new/").content.decode()
    assert '<label for="id_banner">Kroger banner</label>' in page
    banners = [(o["value"], o["text"]) for o in options(page, "banner")]
    assert banners[0] == ("", "Kroger (default)")
    assert ("ralphs", "Ralphs") in banners
    assert ("smithsfoodanddrug", "Smith's") in banners
    assert ("pay-less", "Pay Less") in banners
    assert ("foodsco", "Foods Co") in banners
    assert len(banners) == 19
    assert (selected_option(page, "banner") or {}).get("value") == ""


def test_an_editor_creates_a_connection_with_a_banner(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    assert (
        client.post("/connections/new/", panel_data(oauth_client, banner="qfc")).status_code == 302
    )
    assert Connection.objects.get(name="Weekly shop").banner == "qfc"


def test_an_unknown_banner_is_refused(client: Any, owner: Any, oauth_client: OAuthClient) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client, banner="evil.example"))
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()
    assert not Connection.objects.exists()


def test_client_credentials_refuse_shopper_scopes_in_the_model_words(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = panel_data(cc_client, scopes=["product.compact", "profile.compact"])
    response = client.post("/connections/new/", data)
    assert response.status_code == 400
    assert (
        "When the OAuth 2.0 client uses Client credentials, the profile.compact scope cannot "
        "be selected." in response.content.decode()
    )
    assert Connection.scope_problems(cc_client, Scope.objects.filter(name="cart.basic:write")) == [
        "When the OAuth 2.0 client uses Client credentials, the cart.basic:write scope cannot "
        "be selected."
    ]
    assert not Connection.objects.exists()
