from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from connections_app.access import VIEWERS

pytestmark = pytest.mark.django_db


def sign_up(client: Any, email: str) -> Any:
    return client.post(
        "/accounts/signup/",
        {
            "email": email,
            "password1": "a-Long-enough-pass-42",
            "password2": "a-Long-enough-pass-42",
        },
    )


def test_the_first_account_administers_the_portal(client: Any) -> None:
    response = sign_up(client, "first@anywhere.example")
    assert response.status_code == 302
    user = get_user_model().objects.get(email="first@anywhere.example")
    assert user.is_staff and user.is_superuser
    assert client.get("/admin/").status_code == 200


def test_later_sign_ups_need_an_allowed_domain(client: Any, settings: Any, admin_user: Any) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    response = sign_up(client, "mallory@elsewhere.example")
    assert response.status_code == 200
    assert "Sign-up is open only to @team.example addresses" in response.content.decode()
    assert not get_user_model().objects.filter(email="mallory@elsewhere.example").exists()

    assert sign_up(client, "alice@team.example").status_code == 302
    alice = get_user_model().objects.get(email="alice@team.example")
    assert not alice.is_staff and not alice.is_superuser
    assert list(alice.groups.values_list("name", flat=True)) == [VIEWERS]


def test_without_allowed_domains_the_portal_is_invite_only(
    client: Any, settings: Any, admin_user: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = []
    response = sign_up(client, "bob@team.example")
    assert "<h1>Sign-up is closed</h1>" in response.content.decode()
    assert not get_user_model().objects.filter(email="bob@team.example").exists()


def test_the_admin_is_reached_through_the_portal_sign_in(client: Any) -> None:
    response = client.get("/admin/", follow=True)
    final_url, _ = response.redirect_chain[-1]
    assert final_url.startswith("/accounts/login/?next=")


def test_a_member_who_is_not_staff_cannot_open_the_admin(client: Any, teammate: Any) -> None:
    client.force_login(teammate)
    assert client.get("/admin/", follow=True).status_code == 403


def test_a_domain_sign_up_gets_in_only_after_confirming_the_address(
    client: Any, settings: Any, mailoutbox: Any, admin_user: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    response = sign_up(client, "carol@team.example")
    assert response.status_code == 302
    assert "/accounts/confirm-email/" in response["Location"]
    assert client.get("/").status_code == 302  # not signed in yet
    assert [m.to for m in mailoutbox] == [["carol@team.example"]]


def sign_in(client: Any, email: str, password: str) -> Any:
    return client.post("/accounts/login/", {"login": email, "password": password})


def test_turning_on_allowed_domains_keeps_accounts_that_were_never_asked_to_verify(
    client: Any, settings: Any, django_user_model: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = []
    settings.ACCOUNT_EMAIL_VERIFICATION = "none"
    sign_up(client, "first@team.example")
    client.logout()
    added = django_user_model.objects.create_user(
        username="bob", email="bob@team.example", password="a-Long-enough-pass-42"
    )  # as the admin does
    added.groups.add(Group.objects.get(name=VIEWERS))

    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    for email in ("first@team.example", added.email):
        response = sign_in(client, email, "a-Long-enough-pass-42")
        assert response.status_code == 302
        assert "/accounts/confirm-email/" not in response["Location"], email
        assert client.get("/").status_code == 200, email
        client.logout()


def test_a_domain_sign_up_that_never_confirmed_still_cannot_sign_in(
    client: Any, settings: Any, admin_user: Any, mailoutbox: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    sign_up(client, "carol@team.example")
    client.logout()
    response = sign_in(client, "carol@team.example", "a-Long-enough-pass-42")
    assert "/accounts/confirm-email/" in response["Location"]
    assert client.get("/").status_code == 302


def test_the_first_sign_up_page_says_that_account_will_administer_the_portal(
    client: Any, settings: Any
) -> None:
    page = " ".join(client.get("/accounts/signup/").content.decode().split())
    assert "<strong>this first account administers the portal</strong>" in page
    assert 'name="email"' in page  # allauth's own form follows


def test_later_sign_up_pages_say_nothing_about_administering(
    client: Any, settings: Any, admin_user: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    page = client.get("/accounts/signup/").content.decode()
    assert "first account administers" not in page
    assert 'name="email"' in page


def test_closed_sign_up_says_to_ask_an_administrator(client: Any, admin_user: Any) -> None:
    page = client.get("/accounts/signup/").content.decode()
    assert "<h1>Sign-up is closed</h1>" in page
    assert "ask an administrator to add you" in page
