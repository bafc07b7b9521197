"""allauth's failed sign-in limits count the real client address behind the TLS proxy."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.test import Client

from tests.conftest import PASSWORD
from tests.test_settings import GOOD, ROOT, run_check

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"  # what every request's REMOTE_ADDR is behind the proxy


def sign_in(client: Client, email: str, password: str, *, from_address: str) -> Any:
    return client.post(
        "/accounts/login/",
        {"login": email, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=from_address,
    )


@pytest.fixture(autouse=True)
def _behind_one_proxy(settings: Any) -> None:
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 1


def test_it_does_not_lock_out_other_addresses_after_eleven_bad_passwords_from_one(
    owner: Any,
) -> None:
    attacker = Client()
    for attempt in range(11):
        guess = f"guess{attempt}@example.com"
        sign_in(attacker, guess, "wrong-password", from_address="203.0.113.9")
    blocked = sign_in(attacker, owner.email, PASSWORD, from_address="203.0.113.9")
    assert blocked.status_code == 200
    assert "Too many failed login attempts" in blocked.content.decode()

    colleague = Client()
    response = sign_in(colleague, owner.email, PASSWORD, from_address="198.51.100.7")
    assert response.status_code == 302
    assert colleague.get("/").status_code == 200


def test_it_keeps_the_limit_per_account_whatever_the_address(owner: Any) -> None:
    for attempt in range(5):
        sign_in(Client(), owner.email, "wrong-password", from_address=f"203.0.113.{attempt + 1}")
    response = sign_in(Client(), owner.email, PASSWORD, from_address="198.51.100.7")
    assert response.status_code == 200
    assert "Too many failed login attempts" in response.content.decode()


@pytest.mark.parametrize(
    ("environment", "count", "header"),
    [
        ({}, "0", "None"),
        ({"TRUSTED_PROXY_COUNT": "1"}, "1", "None"),
        ({"TRUSTED_CLIENT_IP_HEADER": "X-Real-IP"}, "0", "X-Real-IP"),
    ],
)
def test_it_reads_the_proxy_settings_from_the_documented_variables(
    environment: dict[str, str], count: str, header: str
) -> None:
    code = (
        "from django.conf import settings; "
        "print(settings.ALLAUTH_TRUSTED_PROXY_COUNT, settings.ALLAUTH_TRUSTED_CLIENT_IP_HEADER)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUSTED_")}
    env.update(GOOD, DJANGO_SETTINGS_MODULE="connections_app.settings", **environment)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [count, header]


def test_it_refuses_a_negative_proxy_count() -> None:
    result = run_check(TRUSTED_PROXY_COUNT="-1")
    assert result.returncode != 0
    assert "TRUSTED_PROXY_COUNT" in result.stderr


# --- Requests that did not come through the proxies ---------------------------------------


def test_a_shorter_x_forwarded_for_than_the_proxies_signs_in_from_the_connecting_address(
    owner: Any, settings: Any
) -> None:
    """Two proxies append two entries: one entry means the request skipped the outer proxy, so
    none can be trusted. The portal counts the address that connected (no 500)."""
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 2
    client = Client()
    response = sign_in(client, owner.email, PASSWORD, from_address="203.0.113.9")
    assert response.status_code == 302
    assert UserSession.objects.get(user=owner).ip == PROXY


def test_a_short_x_forwarded_for_cannot_choose_its_own_address(owner: Any, settings: Any) -> None:
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 2
    for attempt in range(11):
        guess = f"guess{attempt}@example.com"
        sign_in(Client(), guess, "wrong-password", from_address=f"203.0.113.{attempt + 1}")
    blocked = sign_in(Client(), owner.email, PASSWORD, from_address="198.51.100.7")
    assert blocked.status_code == 200
    assert "Too many failed login attempts" in blocked.content.decode()
    # Through both proxies, everyone else still signs in.
    through_both = sign_in(Client(), owner.email, PASSWORD, from_address="198.51.100.7, 10.0.0.1")
    assert through_both.status_code == 302


def test_a_missing_client_ip_header_signs_in_from_the_connecting_address(
    owner: Any, settings: Any
) -> None:
    settings.ALLAUTH_TRUSTED_PROXY_COUNT = 0
    settings.ALLAUTH_TRUSTED_CLIENT_IP_HEADER = "X-Real-IP"
    client = Client()
    response = client.post(
        "/accounts/login/", {"login": owner.email, "password": PASSWORD}, REMOTE_ADDR=PROXY
    )
    assert response.status_code == 302
    assert UserSession.objects.get(user=owner).ip == PROXY
