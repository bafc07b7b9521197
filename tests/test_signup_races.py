"""People signing up at the same moment on an empty portal: one administrator, and everyone
else meets the same rules as later sign-ups (PostgreSQL: row locks are what is tested)."""

from __future__ import annotations

import contextlib
import threading
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client

from connections_app.accounts import SignupForm
from tests.test_signup import sign_up

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def sign_up_together(emails: list[str], monkeypatch: Any) -> list[int]:
    """Sign ``emails`` up in threads; each one's form checks finish before any saves (unless
    a lock makes them wait, which is the point), so the race is run, not hoped for."""
    checked = threading.Barrier(len(emails))
    clean_email = SignupForm.clean_email

    def clean_email_together(self: SignupForm) -> str:
        cleaned = clean_email(self)
        # When the others are queued behind a lock, the wait breaks and this one goes on alone.
        with contextlib.suppress(threading.BrokenBarrierError):
            checked.wait(timeout=2)
        return cleaned

    monkeypatch.setattr(SignupForm, "clean_email", clean_email_together)
    statuses: list[int] = [0] * len(emails)

    def run(index: int) -> None:
        try:
            statuses[index] = sign_up(Client(), emails[index]).status_code
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(emails))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


def test_it_makes_one_administrator_and_no_one_else_on_an_invite_only_portal(
    settings: Any, monkeypatch: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = []
    emails = [f"person{i}@anywhere.example" for i in range(4)]

    sign_up_together(emails, monkeypatch)

    users = list(get_user_model().objects.all())
    assert len(users) == 1
    assert users[0].is_superuser and users[0].is_staff


def test_it_holds_every_sign_up_after_the_first_to_the_domain_rule(
    settings: Any, monkeypatch: Any
) -> None:
    settings.ALLOWED_SIGNUP_DOMAINS = ["team.example"]
    settings.ACCOUNT_EMAIL_VERIFICATION = "mandatory"
    emails = [f"stranger{i}@elsewhere.example" for i in range(3)] + ["alice@team.example"]

    sign_up_together(emails, monkeypatch)

    users = get_user_model().objects.all()
    administrators = [user.email for user in users if user.is_superuser]
    members = [user.email for user in users if not user.is_superuser]
    assert len(administrators) == 1
    assert all(email.endswith("@team.example") for email in members), members
