"""The Sessions page (allauth.usersessions), signing out elsewhere, and deactivation."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.test import Client

from connections_app.models import AuditAction, AuditEvent
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


def signed_in_browser(user: Any, agent: str) -> Client:
    browser = Client(HTTP_USER_AGENT=agent)
    answer = browser.post("/accounts/login/", {"login": user.email, "password": PASSWORD})
    assert answer.status_code == 302
    return browser


def is_signed_in(browser: Client) -> bool:
    return bool(browser.get("/").wsgi_request.user.is_authenticated)


@pytest.mark.parametrize("who", ["admin_user", "owner", "teammate", "outsider"])
def test_everyone_signed_in_sees_their_own_sessions(
    request: pytest.FixtureRequest, who: str, teammate: Any
) -> None:
    person = request.getfixturevalue(who)
    laptop = signed_in_browser(person, "Laptop browser/1.0")
    if person != teammate:
        signed_in_browser(teammate, "Someone else's phone/2.0")
    page = laptop.get("/accounts/sessions/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Laptop browser/1.0" in text
    assert "This session" in text
    assert "Someone else" not in text


def test_signed_out_people_are_sent_to_sign_in(client: Any) -> None:
    assert client.get("/accounts/sessions/")["Location"].startswith("/accounts/login/")


def test_sign_out_the_other_sessions(owner: Any) -> None:
    laptop = signed_in_browser(owner, "Laptop browser/1.0")
    phone = signed_in_browser(owner, "Phone browser/2.0")
    page = laptop.get("/accounts/sessions/").content.decode()
    assert "Phone browser/2.0" in page
    assert "Sign out the other sessions" in page

    laptop.post("/accounts/sessions/")
    assert is_signed_in(laptop)
    assert not is_signed_in(phone)
    ended = AuditEvent.objects.get(action=AuditAction.SESSION_ENDED)
    assert ended.actor == owner
    assert "Phone browser/2.0" in ended.detail


def test_deactivating_someone_in_the_admin_ends_all_their_sessions(
    client: Any, admin_user: Any, owner: Any
) -> None:
    laptop = signed_in_browser(owner, "Laptop browser/1.0")
    phone = signed_in_browser(owner, "Phone browser/2.0")
    assert UserSession.objects.filter(user=owner).count() == 2
    client_for(client, admin_user)
    answer = client.post(
        f"/admin/auth/user/{owner.pk}/change/",
        {
            "username": owner.username,
            "email": owner.email,
            "first_name": "",
            "last_name": "",
            "is_staff": "",
            "groups": [group.pk for group in owner.groups.all()],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "00:00:00",
        },
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]
    owner.refresh_from_db()
    assert not owner.is_active
    assert not UserSession.objects.filter(user=owner).exists()
    assert not is_signed_in(laptop) and not is_signed_in(phone)
    event = AuditEvent.objects.get(action=AuditAction.SESSION_ENDED)
    assert event.actor == admin_user
    assert event.detail == "Account deactivated: 2 session(s) ended"
