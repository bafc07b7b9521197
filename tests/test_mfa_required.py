"""MFA_REQUIRED: who must have a second factor reaches nothing but its setup until done."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.mfa.models import Authenticator

from tests.conftest import client_for
from tests.test_mfa import enrol_totp

pytestmark = pytest.mark.django_db

SETUP = "/accounts/2fa/required/"


@pytest.fixture(autouse=True)
def _editors_need_mfa(settings: Any) -> None:
    settings.MFA_REQUIRED = "editors"


@pytest.mark.parametrize(
    "path", ["/", "/clients/", "/service-keys/", "/admin/", "/accounts/sessions/"]
)
def test_an_editor_without_a_second_factor_reaches_only_its_setup(
    client: Any, owner: Any, path: str
) -> None:
    response = client_for(client, owner).get(path)
    assert response.status_code == 302
    assert response["Location"] == SETUP


def test_an_administrator_without_one_cannot_reach_the_admin(client: Any, admin_user: Any) -> None:
    assert client_for(client, admin_user).get("/admin/")["Location"] == SETUP


def test_the_setup_page_offers_an_authenticator_app_and_a_passkey(client: Any, owner: Any) -> None:
    page = client_for(client, owner).get(SETUP)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Your role needs a second factor" in text
    assert "/accounts/2fa/totp/activate/" in text
    assert "/accounts/2fa/webauthn/add/" in text
    # Its links lead on (to allauth's "confirm it is you" first), not back to this page.
    activate = client.get("/accounts/2fa/totp/activate/")
    assert activate["Location"].startswith("/accounts/reauthenticate/")
    assert client.get(activate["Location"]).status_code == 200
    assert client.post("/accounts/logout/")["Location"] == "/"
    assert not client.get("/").wsgi_request.user.is_authenticated


def test_a_viewer_needs_none(client: Any, teammate: Any) -> None:
    assert client_for(client, teammate).get("/").status_code == 200
    page = client.get(SETUP).content.decode()
    assert "Your role needs a second factor" not in page


def test_an_outsider_needs_none_and_may_still_add_one(client: Any, outsider: Any) -> None:
    response = client_for(client, outsider).get("/")
    assert response.get("Location") != SETUP
    page = client.get(SETUP)
    assert page.status_code == 200
    assert "Your role needs a second factor" not in page.content.decode()


def test_once_enrolled_the_editor_reaches_everything(client: Any, owner: Any) -> None:
    enrol_totp(client, owner)
    assert client.get("/").status_code == 200
    assert client.get("/clients/").status_code == 200


def test_all_means_viewers_too(client: Any, teammate: Any, settings: Any) -> None:
    settings.MFA_REQUIRED = "all"
    assert client_for(client, teammate).get("/")["Location"] == SETUP


def test_none_means_nobody(client: Any, owner: Any, settings: Any) -> None:
    settings.MFA_REQUIRED = "none"
    assert client_for(client, owner).get("/").status_code == 200


def test_recovery_codes_alone_do_not_count(client: Any, owner: Any) -> None:
    Authenticator.objects.create(user=owner, type=Authenticator.Type.RECOVERY_CODES, data={})
    assert client_for(client, owner).get("/")["Location"] == SETUP


def test_the_setup_page_needs_a_signed_in_person(client: Any) -> None:
    assert client.get(SETUP)["Location"].startswith("/accounts/login/")
