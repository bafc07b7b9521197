"""The scopes field of the panel: what it offers, what it refuses, and why."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.forms import ConnectionForm
from connections_app.models import Connection, OAuthClient, Scope
from tests.html_forms import read

pytestmark = pytest.mark.django_db

CART_RULE = (
    "When the OAuth 2.0 client uses Client credentials, the cart.basic:write scope cannot be "
    "selected."
)
PROFILE_RULE = (
    "When the OAuth 2.0 client uses Client credentials, the profile.compact scope cannot be "
    "selected."
)


def form_for(client: OAuthClient, scopes: list[str]) -> ConnectionForm:
    return ConnectionForm(
        {
            "name": "Catalogue feed",
            "environment": client.environment,
            "client": str(client.code),
            "scopes": scopes,
        }
    )


def test_client_credentials_refuse_shopper_scopes_whatever_the_browser_sends(
    cc_client: OAuthClient,
) -> None:
    form = form_for(cc_client, ["product.compact", "cart.basic:write", "profile.compact"])
    assert not form.is_valid()
    assert form.errors["scopes"] == [CART_RULE, PROFILE_RULE]


def test_client_credentials_accept_catalogue_scopes(cc_client: OAuthClient) -> None:
    form = form_for(cc_client, ["product.compact"])
    assert form.is_valid(), form.errors
    assert [scope.name for scope in form.cleaned_data["scopes"]] == ["product.compact"]


def test_authorization_code_accepts_shopper_scopes(oauth_client: OAuthClient) -> None:
    form = form_for(oauth_client, ["cart.basic:write", "profile.compact"])
    assert form.is_valid(), form.errors


def test_at_least_one_scope_is_required(oauth_client: OAuthClient) -> None:
    form = form_for(oauth_client, [])
    assert not form.is_valid()
    assert form.errors["scopes"] == ["Choose at least one scope."]


def test_an_unknown_scope_is_refused(oauth_client: OAuthClient) -> None:
    form = form_for(oauth_client, ["product.compact", "admin:everything"])
    assert not form.is_valid()
    assert "admin:everything" in str(form.errors["scopes"])


def test_scopes_the_client_cannot_use_are_disabled_with_the_reason(
    cc_client: OAuthClient,
) -> None:
    form = ConnectionForm(initial={"client": str(cc_client.code), "environment": "certification"})
    by_name = {option.name: option for option in form.scope_options()}
    assert by_name["cart.basic:write"].disabled
    assert by_name["cart.basic:write"].reason == CART_RULE
    assert by_name["profile.compact"].reason == PROFILE_RULE
    assert not by_name["product.compact"].disabled


def test_without_a_client_every_scope_is_usable() -> None:
    assert not any(option.disabled for option in ConnectionForm().scope_options())


def test_the_panel_renders_the_rule_next_to_the_disabled_box(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = {"name": "x", "environment": "certification", "client": str(cc_client.code)}
    page = client.post("/connections/new/", {**data, "action": "save"}).content.decode()
    boxes = {i["value"]: i for i in read(page).inputs if i.get("name") == "scopes"}
    assert "disabled" in boxes["cart.basic:write"]
    assert "disabled" in boxes["profile.compact"]
    assert "disabled" not in boxes["product.compact"]
    reason_id = boxes["cart.basic:write"]["aria-describedby"]
    assert f'id="{reason_id}" data-scope-reason>{CART_RULE}</span>' in page
    # Each scope also carries the rule for the picker to apply when the client changes.
    assert 'data-scope="cart.basic:write" data-allows-client-credentials="false"' in page
    assert 'data-scope="product.compact" data-allows-client-credentials="true"' in page


def test_the_server_message_is_shown_when_the_rule_is_forced(
    client: Any, owner: Any, cc_client: OAuthClient
) -> None:
    client.force_login(owner)
    data = {
        "name": "Catalogue feed",
        "environment": "certification",
        "client": str(cc_client.code),
        "scopes": ["product.compact", "cart.basic:write"],
        "action": "save",
    }
    response = client.post("/connections/new/", data)
    assert response.status_code == 400
    assert CART_RULE in response.content.decode()
    assert not Connection.objects.exists()


def test_partner_scopes_added_by_administrators_are_offered(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    Scope.objects.create(name="partner.orders:read", description="Read partner orders")
    client.force_login(owner)
    page = client.get("/connections/new/").content.decode()
    assert 'value="partner.orders:read"' in page
    assert "Read partner orders" in page
    form = form_for(oauth_client, ["partner.orders:read"])
    assert form.is_valid(), form.errors


def test_the_picker_is_an_enhancement_of_the_same_field(client: Any, owner: Any) -> None:
    client.force_login(owner)
    page = client.get("/connections/new/").content.decode()
    assert "data-scope-picker" in page
    assert '<script src="/static/js/scope-picker.js"></script>' in page
    names = [i.get("name") for i in read(page).inputs if i.get("type") == "checkbox"]
    assert names == ["scopes", "scopes", "scopes"]
