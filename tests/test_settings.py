"""The portal refuses to start on an insecure or unparsable configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from connections_app.crypto import generate_key

ROOT = Path(__file__).resolve().parent.parent
GOOD = {
    "DEBUG": "false",
    "SECRET_KEY": "a-long-random-production-secret-key-for-tests-only-123456",
    "ENCRYPTION_KEYS": generate_key("k1"),
    "SITE_URL": "https://portal.example.com",
    "PORTAL_SKIP_DOTENV": "1",
}


def run_check(**overrides: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in GOOD and not k.endswith("_FILE")}
    env.pop("DATABASE_URL", None)
    env.update(GOOD)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    env["DJANGO_SETTINGS_MODULE"] = "connections_app.settings"
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_good_production_configuration_starts() -> None:
    result = run_check()
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": "change-me"}, "SECRET_KEY"),
        ({"SECRET_KEY": "django-insecure-abc"}, "SECRET_KEY"),
        ({"ENCRYPTION_KEYS": None}, "ENCRYPTION_KEYS"),
        ({"ENCRYPTION_KEYS": "k1:short"}, "ENCRYPTION_KEYS"),
        ({"DEBUG": "maybe"}, "DEBUG"),
        ({"EMAIL_PORT": "twenty-five"}, "EMAIL_PORT"),
        ({"SITE_URL": "http://portal.example.com"}, "SITE_URL"),
        ({"KROGER_PRODUCTION_URL": "http://api.kroger.com/v1/"}, "KROGER_PRODUCTION_URL"),
        ({"KROGER_PRODUCTION_URL": "http://127.0.0.1:9999/v1/"}, "KROGER_PRODUCTION_URL"),
        ({"KROGER_CERTIFICATION_URL": "http://localhost:9999/v1/"}, "KROGER_CERTIFICATION_URL"),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL"),
        ({"WEBHOOK_ALLOW_PRIVATE": "sometimes"}, "WEBHOOK_ALLOW_PRIVATE"),
        ({"WEBHOOK_LOG_DAYS": "a month"}, "WEBHOOK_LOG_DAYS"),
        ({"WEBHOOK_LOG_DAYS": "0"}, "WEBHOOK_LOG_DAYS"),
        (
            {"ALLOWED_SIGNUP_DOMAINS": "team.example", "ACCOUNT_EMAIL_VERIFICATION": "none"},
            "ACCOUNT_EMAIL_VERIFICATION",
        ),
        ({"SSO_OIDC_NAME": "Acme", "SSO_OIDC_ISSUER": "https://id.example"}, "SSO_OIDC_CLIENT_ID"),
        (
            {
                **dict.fromkeys(
                    ("SSO_OIDC_NAME", "SSO_OIDC_CLIENT_ID", "SSO_OIDC_CLIENT_SECRET"), "x"
                ),
                "SSO_OIDC_ISSUER": "http://id.example",
            },
            "SSO_OIDC_ISSUER",
        ),
        ({"PASSWORD_SIGN_IN": "false"}, "PASSWORD_SIGN_IN"),
        ({"MFA_REQUIRED": "admins"}, "MFA_REQUIRED"),
    ],
)
def test_it_refuses_to_start_with_one_line_naming_the_variable(
    overrides: dict[str, str | None], named: str
) -> None:
    result = run_check(**overrides)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error:")
    assert named in lines[0]


def test_secrets_can_come_from_files(tmp_path: Path) -> None:
    secret_file = tmp_path / "key"
    secret_file.write_text(GOOD["ENCRYPTION_KEYS"] + "\n")
    assert run_check(ENCRYPTION_KEYS=None, ENCRYPTION_KEYS_FILE=str(secret_file)).returncode == 0
    missing = run_check(ENCRYPTION_KEYS=None, ENCRYPTION_KEYS_FILE=str(tmp_path / "nope"))
    assert "ENCRYPTION_KEYS_FILE" in missing.stderr


def test_it_takes_https_kroger_urls_on_a_loopback_host() -> None:
    result = run_check(
        KROGER_PRODUCTION_URL="https://127.0.0.1:9999/v1/",
        KROGER_CERTIFICATION_URL="https://localhost:9999/v1/",
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("debug", ["true", "false"])
def test_it_refuses_a_plain_http_kroger_url_even_on_loopback_and_in_debug(debug: str) -> None:
    result = run_check(DEBUG=debug, KROGER_CERTIFICATION_URL="http://127.0.0.1:9999/v1/")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "Configuration error: KROGER_CERTIFICATION_URL='http://127.0.0.1:9999/v1/' is not a "
        "usable URL: use https://"
    ]


def test_sign_up_by_domain_requires_confirmed_addresses_by_default() -> None:
    result = run_check(ALLOWED_SIGNUP_DOMAINS="team.example", ACCOUNT_EMAIL_VERIFICATION=None)
    assert result.returncode == 0, result.stderr


def test_sso_is_configured_by_four_variables_and_the_secret_may_come_from_a_file(
    tmp_path: Path,
) -> None:
    secret_file = tmp_path / "sso-secret"
    secret_file.write_text("s3cret\n")
    sso = {
        "SSO_OIDC_NAME": "Acme",
        "SSO_OIDC_ISSUER": "https://id.example/realms/team",
        "SSO_OIDC_CLIENT_ID": "portal",
        "SSO_OIDC_CLIENT_SECRET_FILE": str(secret_file),
        "PASSWORD_SIGN_IN": "false",
    }
    result = run_check(**sso)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("value", "expected"), [(None, "True True"), ("false", "False False")])
def test_passkey_sign_in_is_on_unless_passkey_sign_in_is_false(
    value: str | None, expected: str
) -> None:
    code = (
        "from django.conf import settings; from django.urls import reverse, NoReverseMatch\n"
        "try: reverse('mfa_login_webauthn'); routed = True\n"
        "except NoReverseMatch: routed = False\n"
        "print(settings.MFA_PASSKEY_LOGIN_ENABLED, routed)"
    )
    env = {k: v for k, v in os.environ.items() if k not in GOOD and k != "PASSKEY_SIGN_IN"}
    env.pop("DATABASE_URL", None)
    env.update(GOOD, DJANGO_SETTINGS_MODULE="connections_app.settings")
    if value is not None:
        env["PASSKEY_SIGN_IN"] = value
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected
