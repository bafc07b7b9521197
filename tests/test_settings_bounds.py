"""Settings outside what works are refused at start-up, in one line naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.test_settings import GOOD, ROOT, run_check


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"KROGER_TIMEOUT_SECONDS": "0"}, "KROGER_TIMEOUT_SECONDS"),
        ({"KROGER_TIMEOUT_SECONDS": "-5"}, "KROGER_TIMEOUT_SECONDS"),
        ({"KROGER_TIMEOUT_SECONDS": "86400"}, "KROGER_TIMEOUT_SECONDS"),
        ({"SECRET_KEY": "short-but-not-a-default"}, "SECRET_KEY"),
        ({"SECRET_KEY": "a" * 60}, "SECRET_KEY"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL"),
        ({"DEBUG": "true", "SITE_URL": "http://127.attacker.example"}, "SITE_URL"),
        ({"DEBUG": "true", "SITE_URL": "http://localhost.attacker.example:8000"}, "SITE_URL"),
    ],
)
def test_it_refuses_to_start_naming_the_variable(overrides: dict[str, str], named: str) -> None:
    result = run_check(**overrides)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error:")
    assert named in lines[0]


@pytest.mark.parametrize(
    "overrides",
    [
        {"KROGER_TIMEOUT_SECONDS": "1"},
        {"LOG_LEVEL": "warning"},
        {"DEBUG": "true", "SECRET_KEY": "short", "SITE_URL": "http://127.0.0.1:8000"},
        {"DEBUG": "true", "SITE_URL": "http://[::1]:8000"},
        {"SITE_URL": "HTTPS://Portal.Example.com"},
    ],
)
def test_it_starts_with_values_inside_the_bounds(overrides: dict[str, str]) -> None:
    result = run_check(**overrides)
    assert result.returncode == 0, result.stderr


def test_it_keeps_the_site_url_in_the_form_browsers_send_it_back() -> None:
    env = {**os.environ, **GOOD, "SITE_URL": "HTTPS://Portal.Example.com/"}
    env.pop("DATABASE_URL", None)
    env["DJANGO_SETTINGS_MODULE"] = "connections_app.settings"
    code = "from django.conf import settings; print(settings.OAUTH_REDIRECT_URI)"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.stdout.strip() == "https://portal.example.com/oauth/callback/", result.stderr
