"""Second factors in a real browser: an authenticator app, and a passkey held by Chromium's
virtual authenticator (DevTools protocol ``WebAuthn.addVirtualAuthenticator``)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from allauth.mfa.models import Authenticator

from connections_app.models import AuditAction, AuditEvent
from tests.accessibility import assert_accessible
from tests.conftest import PASSWORD, sign_in
from tests.test_mfa import totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _editors_need_mfa(settings: Any) -> None:
    settings.MFA_REQUIRED = "editors"
    settings.MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = True  # the live server is http://localhost


def sign_in_with_password(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()


def confirm_it_is_me(page: Any) -> None:
    """allauth asks for the password again before a change to second factors."""
    page.wait_for_url("**/accounts/reauthenticate/**")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Confirm").click()


def add_virtual_authenticator(page: Any) -> None:
    """Chromium's virtual authenticator: a platform passkey store that verifies the user
    and answers every request by itself."""
    devtools = page.context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    devtools.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )


def test_an_editor_sets_up_an_authenticator_app_and_signs_in_with_its_code(
    page: Any, owner: Any
) -> None:
    sign_in(page, owner)
    page.goto("/clients/")
    assert page.get_by_role("heading", name="Set up a second factor").is_visible()
    page.get_by_role("link", name="Authenticator app").click()
    confirm_it_is_me(page)
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    page.goto("/clients/")
    assert page.get_by_role("heading", name="OAuth 2.0 clients").is_visible()

    page.get_by_role("button", name="Sign out").click()
    sign_in_with_password(page, owner)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.get_by_label("Code").fill(totp_code(secret, time.time() + 30))
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    assert page.get_by_text(owner.email).is_visible()


def test_an_editor_adds_a_passkey_and_signs_in_with_it(page: Any, owner: Any) -> None:
    add_virtual_authenticator(page)
    sign_in(page, owner)
    page.goto("/")
    page.get_by_role("link", name="Passkey or security key").click()
    confirm_it_is_me(page)
    page.get_by_label("Name").fill("Laptop passkey")
    page.wait_for_load_state("load")  # the Add button works once allauth's script has run
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    assert Authenticator.objects.filter(user=owner, type=Authenticator.Type.WEBAUTHN).exists()
    page.goto("/clients/")
    assert page.get_by_role("heading", name="OAuth 2.0 clients").is_visible()

    page.get_by_role("button", name="Sign out").click()
    sign_in_with_password(page, owner)
    page.wait_for_url("**/accounts/2fa/authenticate/")
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Use a security key").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    assert page.get_by_text(owner.email).is_visible()


def add_passwordless_passkey(page: Any, user: Any) -> None:
    """Chromium's virtual authenticator holds a passkey ``user`` adds as passwordless; then
    they sign out."""
    add_virtual_authenticator(page)
    sign_in(page, user)
    page.goto("/")
    page.get_by_role("link", name="Passkey or security key").click()
    confirm_it_is_me(page)
    page.get_by_label("Name").fill("Laptop passkey")
    page.get_by_label("Passwordless").check()
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    page.get_by_role("button", name="Sign out").click()


def test_a_passwordless_passkey_signs_in_on_its_own(page: Any, owner: Any) -> None:
    """allauth's passkey sign-in (PASSKEY_SIGN_IN): no address, no password, one touch."""
    add_passwordless_passkey(page, owner)

    page.goto("/accounts/login/")
    page.wait_for_load_state("load")  # the button works once allauth's script has run
    assert_accessible(page)
    page.get_by_role("button", name="Use a passkey").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    assert page.get_by_text(owner.email).is_visible()
    page.goto("/clients/")  # MFA_REQUIRED=editors: a passkey is a second factor
    assert page.get_by_role("heading", name="OAuth 2.0 clients").is_visible()
    event = AuditEvent.objects.filter(action=AuditAction.SIGNED_IN, actor=owner).latest("id")
    assert event.detail == "Signed in with a passkey (no password)"


def test_with_password_sign_in_off_a_passkey_signs_in_superusers_alone(
    page: Any, owner: Any, settings: Any
) -> None:
    """PASSWORD_SIGN_IN=false leaves SSO as the way in: a passkey is refused like a password,
    except for superusers under BREAK_GLASS_PASSWORD_SIGN_IN."""
    add_passwordless_passkey(page, owner)
    settings.PASSWORD_SIGN_IN = False
    settings.BREAK_GLASS_PASSWORD_SIGN_IN = True
    page.goto("/accounts/login/")
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Use a passkey").click()
    page.get_by_role("heading", name="Password sign-in is off").wait_for()
    page.goto("/")
    assert "/accounts/login/" in page.url


def test_a_passkey_that_is_only_a_second_factor_does_not_sign_in_alone(
    page: Any, owner: Any
) -> None:
    add_virtual_authenticator(page)
    sign_in(page, owner)
    page.goto("/")
    page.get_by_role("link", name="Passkey or security key").click()
    confirm_it_is_me(page)
    page.get_by_label("Name").fill("Security key")
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Add").click()
    page.wait_for_url(lambda url: "/webauthn/add/" not in url)
    page.get_by_role("button", name="Sign out").click()

    page.goto("/accounts/login/")
    page.wait_for_load_state("load")
    page.get_by_role("button", name="Use a passkey").click()
    page.get_by_role("alert").filter(has_text="No passkey signed you in").wait_for()
    assert page.url.endswith("/accounts/login/")
    assert not page.get_by_role("button", name="Sign out").count()
