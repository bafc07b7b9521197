"""Team SSO rules, against the real test identity provider (tests/fakes/identity_provider)."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.socialaccount.models import SocialAccount
from django.contrib.auth import get_user_model

from connections_app.access import ADMINISTRATORS, EDITORS, VIEWERS, role_of
from connections_app.models import AuditAction, AuditEvent
from tests.conftest import PASSWORD
from tests.fakes.fake_idp import FakeIdentityProvider
from tests.sso_flow import sign_in_through

pytestmark = pytest.mark.django_db(transaction=True)


def signed_in_as(client: Any) -> Any:
    return client.get("/").wsgi_request.user


def test_it_creates_a_viewer_at_the_first_sso_sign_in(
    client: Any, sso: FakeIdentityProvider, admin_user: Any
) -> None:
    sso.set_person("carol", email="carol@team.example")
    response = sign_in_through(client, sso, "carol")
    assert response.status_code == 200
    carol = get_user_model().objects.get(email="carol@team.example")
    assert signed_in_as(client) == carol
    assert role_of(carol) == VIEWERS
    assert not carol.has_usable_password()


def test_the_first_sso_account_on_an_empty_portal_administers_it(
    client: Any, sso: FakeIdentityProvider
) -> None:
    sso.set_person("root", email="root@team.example")
    sign_in_through(client, sso, "root")
    assert role_of(get_user_model().objects.get(email="root@team.example")) == ADMINISTRATORS


def test_it_links_an_existing_account_with_the_same_verified_address(
    client: Any, sso: FakeIdentityProvider, teammate: Any
) -> None:
    sso.set_person("tm", email="TEAMMATE@example.com")
    sign_in_through(client, sso, "tm")
    assert signed_in_as(client) == teammate
    assert get_user_model().objects.filter(email__iexact="teammate@example.com").count() == 1
    assert SocialAccount.objects.get(provider="sso").user == teammate
    # The portal had not confirmed that address itself: whoever set the password loses it.
    teammate.refresh_from_db()
    assert not teammate.has_usable_password()


def test_it_refuses_an_unverified_address_without_touching_a_same_named_account(
    client: Any, sso: FakeIdentityProvider, teammate: Any
) -> None:
    sso.set_person("fake", email="teammate@example.com", email_verified=False)
    response = sign_in_through(client, sso, "fake")
    assert response.status_code == 403
    assert "Your address is not verified" in response.content.decode()
    assert not signed_in_as(client).is_authenticated
    assert not SocialAccount.objects.exists()


def test_it_refuses_an_address_outside_the_allowed_domains(
    client: Any, sso: FakeIdentityProvider, admin_user: Any, settings: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    sso.set_person("erin", email="erin@elsewhere.example")
    response = sign_in_through(client, sso, "erin")
    assert response.status_code == 403
    assert "New accounts are open only to @team.example addresses" in response.content.decode()
    assert not get_user_model().objects.filter(email="erin@elsewhere.example").exists()


def test_the_admins_group_makes_and_unmakes_an_administrator(
    client: Any, sso: FakeIdentityProvider, owner: Any, settings: Any
) -> None:
    settings.SSO_OIDC_ADMINS_GROUPS = ["portal-admins"]
    sso.set_person("owner", email="owner@example.com", groups=["portal-admins"])
    sign_in_through(client, sso, "owner")
    owner.refresh_from_db()
    assert owner.is_superuser and owner.is_staff
    assert client.get("/admin/").status_code == 200

    client.logout()
    sso.set_person("owner", email="owner@example.com", groups=["staff"])
    sign_in_through(client, sso, "owner")
    owner.refresh_from_db()
    # Editors are not governed by the claim here (SSO_OIDC_EDITORS_GROUPS is unset).
    assert role_of(owner) == EDITORS
    assert client.get("/admin/").status_code == 302
    details = list(
        AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED)
        .order_by("at", "id")
        .values_list("detail", flat=True)
    )
    assert [d.split(",")[0] for d in details] == [
        "Editors → Administrators",
        "Administrators → Editors",
    ]


def test_without_group_settings_roles_stay_as_administrators_set_them(
    client: Any, sso: FakeIdentityProvider, owner: Any
) -> None:
    sso.set_person("owner", email="owner@example.com", groups=[])
    sign_in_through(client, sso, "owner")
    owner.refresh_from_db()
    assert role_of(owner) == EDITORS
    assert not AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED).exists()


def test_the_sign_in_page_offers_the_button_and_shows_the_redirect_uri(
    client: Any, sso: FakeIdentityProvider, settings: Any
) -> None:
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Acme" in page
    assert f"{settings.SITE_URL}/accounts/oidc/sso/login/callback/" in page


def test_without_sso_settings_there_is_no_button(client: Any, settings: Any) -> None:
    settings.SOCIALACCOUNT_PROVIDERS = {}
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with" not in page
    assert 'name="password"' in page
    assert client.post("/accounts/oidc/sso/login/").status_code == 404


def password_sign_in(client: Any, email: str) -> Any:
    return client.post("/accounts/login/", {"login": email, "password": PASSWORD})


def test_with_password_sign_in_off_only_sso_signs_people_in(
    client: Any, sso: FakeIdentityProvider, settings: Any, admin_user: Any, owner: Any
) -> None:
    settings.PASSWORD_SIGN_IN = False
    page = client.get("/accounts/login/").content.decode()
    assert "Sign in with Acme" in page
    assert 'name="password"' not in page
    assert "Forgot your password" not in page
    assert "Use a passkey" not in page

    response = password_sign_in(client, owner.email)
    assert response.status_code == 403
    assert "Password sign-in is off" in response.content.decode()
    assert not signed_in_as(client).is_authenticated
    assert password_sign_in(client, admin_user.email).status_code == 403
    assert client.get("/accounts/password/reset/").status_code == 404
    assert client.get("/accounts/signup/").status_code == 200
    assert "Sign-up is closed" in client.get("/accounts/signup/").content.decode()

    sso.set_person("owner", email=owner.email)
    sign_in_through(client, sso, "owner")
    assert signed_in_as(client) == owner


def test_break_glass_lets_superusers_alone_sign_in_with_a_password(
    client: Any, sso: FakeIdentityProvider, settings: Any, admin_user: Any, owner: Any
) -> None:
    settings.PASSWORD_SIGN_IN = False
    settings.BREAK_GLASS_PASSWORD_SIGN_IN = True
    page = client.get("/accounts/login/").content.decode()
    assert 'name="password"' in page
    assert "Password sign-in is for administrators" in page
    assert password_sign_in(client, owner.email).status_code == 403
    assert password_sign_in(client, admin_user.email).status_code == 302
    assert signed_in_as(client) == admin_user
    assert client.get("/accounts/password/reset/").status_code == 404


def test_a_second_factor_at_the_identity_provider_counts_for_mfa_required(
    client: Any, sso: FakeIdentityProvider, owner: Any, settings: Any
) -> None:
    settings.MFA_REQUIRED = "editors"
    sso.set_person("owner", email=owner.email, amr=["pwd", "mfa"])
    sign_in_through(client, sso, "owner")
    assert client.get("/clients/").status_code == 200


def test_without_one_the_editor_must_set_up_the_portals_own(
    client: Any, sso: FakeIdentityProvider, owner: Any, settings: Any
) -> None:
    settings.MFA_REQUIRED = "editors"
    sso.set_person("owner", email=owner.email, amr=["pwd"])
    sign_in_through(client, sso, "owner")
    assert client.get("/clients/")["Location"] == "/accounts/2fa/required/"
    # Nothing to re-enter (no password, no factor yet): the fresh SSO sign-in is the proof.
    assert client.get("/accounts/2fa/totp/activate/").status_code == 200


def test_the_portals_own_factor_is_asked_for_unless_the_identity_provider_checked_one(
    client: Any, sso: FakeIdentityProvider, owner: Any
) -> None:
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    TOTP.activate(owner, generate_totp_secret())
    sso.set_person("owner", email=owner.email, amr=["pwd"])
    asked = sign_in_through(client, sso, "owner")
    assert asked.redirect_chain[-1][0] == "/accounts/2fa/authenticate/"
    assert not client.get("/").wsgi_request.user.is_authenticated

    client.logout()
    sso.set_person("owner", email=owner.email, amr=["pwd", "otp", "mfa"])
    sign_in_through(client, sso, "owner")
    assert signed_in_as(client) == owner
