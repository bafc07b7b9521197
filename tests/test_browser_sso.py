"""Team SSO in a real browser against a real OpenID Connect provider (django-oauth-toolkit)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore

from connections_app.access import EDITORS, VIEWERS, role_of
from connections_app.models import AuditAction, AuditEvent
from tests.accessibility import assert_accessible
from tests.fakes.fake_idp import PASSWORD, FakeIdentityProvider

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def sign_in_with_sso(page: Any, username: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with Acme").click()
    page.wait_for_url(lambda url: "127.0.0.1" in url)
    if page.get_by_label("Username").count():
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in to the identity provider").click()
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(lambda url: "127.0.0.1" not in url)


def sign_out(page: Any) -> None:
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("button", name="Sign in with Acme").wait_for()


def test_it_signs_a_new_person_in_as_a_viewer_and_follows_the_groups_claim(
    page: Any, sso: FakeIdentityProvider, admin_user: Any, settings: Any
) -> None:
    settings.SSO_OIDC_EDITORS_GROUPS = ["portal-editors"]
    sso.set_person("carol", email="carol@team.example")

    sign_in_with_sso(page, "carol")
    assert page.get_by_text("carol@team.example").is_visible()
    carol = get_user_model().objects.get(email="carol@team.example")
    assert role_of(carol) == VIEWERS
    assert not carol.has_usable_password()

    sign_out(page)
    sso.set_person("carol", email="carol@team.example", groups=["portal-editors"])
    sign_in_with_sso(page, "carol")
    assert role_of(get_user_model().objects.get(pk=carol.pk)) == EDITORS

    sign_out(page)
    sso.set_person("carol", email="carol@team.example", groups=[])
    sign_in_with_sso(page, "carol")
    assert role_of(get_user_model().objects.get(pk=carol.pk)) == VIEWERS

    changes = AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED, actor=carol)
    assert [event.detail.split(",")[0] for event in changes.order_by("at", "id")] == [
        "Viewers → Editors",
        "Editors → Viewers",
    ]
    assert get_user_model().objects.filter(email="carol@team.example").count() == 1


def test_it_refuses_an_address_the_identity_provider_has_not_verified(
    page: Any, sso: FakeIdentityProvider, admin_user: Any
) -> None:
    sso.set_person("dave", email="dave@team.example", email_verified=False)
    sign_in_with_sso(page, "dave")
    assert page.get_by_role("heading", name="Your address is not verified").is_visible()
    assert not get_user_model().objects.filter(email="dave@team.example").exists()


def test_it_refuses_an_address_outside_the_allowed_domains(
    page: Any, sso: FakeIdentityProvider, admin_user: Any, settings: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    sso.set_person("erin", email="erin@elsewhere.example")
    sign_in_with_sso(page, "erin")
    assert page.get_by_role("heading", name="This address cannot join the portal").is_visible()
    assert page.get_by_text("@team.example").is_visible()
    assert not get_user_model().objects.filter(email="erin@elsewhere.example").exists()


def age_browser_sign_in(page: Any, seconds: int) -> None:
    """Move the record of when the browser's session signed in ``seconds`` back."""
    [cookie] = [c for c in page.context.cookies() if c["name"] == "portal_session"]
    session = SessionStore(session_key=cookie["value"])
    records = session["account_authentication_methods"]
    for record in records:
        record["at"] -= seconds
    session["account_authentication_methods"] = records
    session.save()


def test_an_sso_account_confirms_it_is_them_by_signing_in_again_at_the_identity_provider(
    page: Any, sso: FakeIdentityProvider, admin_user: Any, settings: Any
) -> None:
    """No password and no second factor, signed in ten minutes ago: a sensitive change sends
    the person to the identity provider, which asks for the password again, and back."""
    settings.REAUTHENTICATE_SENSITIVE_CHANGES = True
    settings.SSO_OIDC_ADMINS_GROUPS = ["portal-admins"]
    sso.set_person("carol", email="carol@team.example", groups=["portal-admins"])
    sign_in_with_sso(page, "carol")
    age_browser_sign_in(page, 600)

    page.goto("/service-keys/new/")
    page.get_by_role("heading", name="Confirm it is you").wait_for()
    assert_accessible(page)
    page.get_by_role("button", name="Sign in again with Acme").click()
    page.wait_for_url(lambda url: "127.0.0.1" in url)
    # Signed in there already, yet asked again (prompt=login).
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in to the identity provider").click()
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url("**/service-keys/new/")
    page.get_by_role("heading", name="New service key").wait_for()
    assert page.get_by_text("carol@team.example").is_visible()
