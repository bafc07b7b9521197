"""Confirming it is you by signing in again at the team's identity provider: the way for SSO
accounts with no password and no second factor, whose sign-in is older than five minutes.
Against the real test identity provider (tests/fakes/identity_provider)."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import get_user_model

from connections_app.models import ServiceKey
from tests.fakes.fake_idp import FakeIdentityProvider
from tests.sso_flow import sign_in_through, through_identity_provider

pytestmark = pytest.mark.django_db(transaction=True)

CONFIRM = "/accounts/reauthenticate/sso/"


@pytest.fixture(autouse=True)
def _reauthentication_on(settings: Any) -> None:
    settings.REAUTHENTICATE_SENSITIVE_CHANGES = True
    settings.SSO_OIDC_ADMINS_GROUPS = ["portal-admins"]


@pytest.fixture
def carol(client: Any, sso: FakeIdentityProvider, admin_user: Any) -> Any:
    """An administrator who signs in only through SSO (no password, no second factor), and
    did so ten minutes ago."""
    sso.set_person("carol", email="carol@team.example", groups=["portal-admins"])
    sign_in_through(client, sso, "carol")
    user = get_user_model().objects.get(email="carol@team.example")
    assert user.is_superuser and not user.has_usable_password()
    age_sign_in(client, 600)
    return user


def age_sign_in(client: Any, seconds: int) -> None:
    """Move the session's record of how and when its person signed in ``seconds`` back."""
    session = client.session
    records = session["account_authentication_methods"]
    for record in records:
        record["at"] -= seconds
    session["account_authentication_methods"] = records
    session.save()


def confirm_at_identity_provider(client: Any, next_url: str, username: str) -> Any:
    page = client.get(CONFIRM, {"next": next_url})
    assert page.status_code == 200
    assert "Sign in again with Acme" in page.content.decode()
    start = client.post(CONFIRM, {"next": next_url})
    assert start.status_code == 302, start.content.decode()[:2000]
    query = parse_qs(urlsplit(start["Location"]).query)
    assert query["prompt"] == ["login"]
    return through_identity_provider(client, start["Location"], username)


def test_an_sso_account_confirms_by_signing_in_again_at_the_identity_provider(
    client: Any, carol: Any
) -> None:
    asked = client.get("/service-keys/new/")
    assert asked.status_code == 302
    assert asked["Location"] == f"{CONFIRM}?next=%2Fservice-keys%2Fnew%2F"

    back = confirm_at_identity_provider(client, "/service-keys/new/", "carol")
    assert back.redirect_chain[-1][0] == "/service-keys/new/"
    assert back.status_code == 200
    assert back.wsgi_request.user == carol
    assert client.get("/service-keys/new/").status_code == 200


def test_a_form_sent_before_confirming_is_carried_out_after(client: Any, carol: Any) -> None:
    key, _ = ServiceKey.create_key(name="Lists", may_proxy=True, all_connections=True)
    revoke = f"/service-keys/{key.code}/revoke/"
    asked = client.post(revoke)
    assert asked["Location"].startswith(CONFIRM)
    key.refresh_from_db()
    assert key.revoked_at is None

    back = confirm_at_identity_provider(client, revoke, "carol")
    assert back.redirect_chain[-1][0] == "/service-keys/"
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_signing_in_there_as_someone_else_confirms_nothing(
    client: Any, sso: FakeIdentityProvider, carol: Any
) -> None:
    sso.set_person("mallory", email="mallory@team.example")
    refused = confirm_at_identity_provider(client, "/service-keys/new/", "mallory")
    assert refused.status_code == 403
    text = refused.content.decode()
    assert "That is not your account" in text
    assert "mallory@team.example" in text
    assert client.get("/").wsgi_request.user == carol
    assert client.get("/service-keys/new/")["Location"].startswith(CONFIRM)


def test_an_identity_provider_that_does_not_check_again_confirms_nothing(
    client: Any, sso: FakeIdentityProvider, carol: Any
) -> None:
    an_hour_ago = int(time.time()) - 3600
    sso.set_person(
        "carol", email="carol@team.example", groups=["portal-admins"], signed_in_at=an_hour_ago
    )
    refused = confirm_at_identity_provider(client, "/service-keys/new/", "carol")
    assert refused.status_code == 403
    assert "Acme did not ask you to sign in again" in refused.content.decode()
    assert client.get("/service-keys/new/")["Location"].startswith(CONFIRM)


def test_people_with_a_password_are_offered_the_identity_provider_too(
    client: Any, sso: FakeIdentityProvider, carol: Any
) -> None:
    carol.set_password("a-password-Qw81")
    carol.save()
    client.force_login(carol)  # a new password ends the session it was set in
    page = client.get("/accounts/reauthenticate/", {"next": "/service-keys/new/"})
    assert page.status_code == 200
    assert "Sign in again with Acme" in page.content.decode()


def test_an_account_with_no_way_to_confirm_is_told_what_to_do(
    client: Any, django_user_model: Any
) -> None:
    """No password, no second factor, no SSO account: the page says to sign in again."""
    nobody = django_user_model.objects.create_user(
        username="nopass", email="nopass@example.com", is_superuser=True, is_staff=True
    )
    assert not nobody.has_usable_password()
    client.force_login(nobody)
    asked = client.get("/service-keys/new/")
    assert asked["Location"].startswith(CONFIRM)
    page = client.get(asked["Location"])
    assert page.status_code == 200
    text = page.content.decode()
    assert "Sign out and sign" in text
    assert "ask an administrator to set a password" in text


def test_someone_who_must_set_up_a_second_factor_can_confirm_on_the_way(
    client: Any, carol: Any, settings: Any
) -> None:
    """MFA_REQUIRED keeps them on the setup pages; adding a factor asks to confirm first, and
    the identity provider's answer gets through to finish it."""
    settings.MFA_REQUIRED = "editors"
    assert client.get("/")["Location"] == "/accounts/2fa/required/"
    activate = "/accounts/2fa/totp/activate/"
    assert client.get(activate)["Location"].startswith(CONFIRM)

    back = confirm_at_identity_provider(client, activate, "carol")
    assert back.redirect_chain[-1][0] == activate
    assert back.status_code == 200
    assert 'name="code"' in back.content.decode()
