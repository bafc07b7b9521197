"""With production settings, `manage.py check --deploy --fail-level WARNING` passes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from django.conf import settings

from connections_app.crypto import generate_key

ROOT = Path(__file__).resolve().parent.parent


def run_deploy_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    """The check in a fresh process, with the environment a production .env gives."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key in {"PATH", "HOME", "LANG", "SYSTEMROOT"}
    }
    env.update(
        {
            "PORTAL_SKIP_DOTENV": "1",
            "DJANGO_SETTINGS_MODULE": "connections_app.settings",
            "DEBUG": "false",
            "SECRET_KEY": "production-like-secret-key-" + "k3Qv9xZr" * 6,
            "ENCRYPTION_KEYS": generate_key("k1"),
            "SITE_URL": "https://portal.example.com",
            "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
            **overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_it_passes_the_deploy_checks_with_production_settings() -> None:
    result = run_deploy_check()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_it_fails_the_deploy_checks_without_hsts() -> None:
    result = run_deploy_check(SECURE_HSTS_SECONDS="0")

    assert result.returncode != 0
    assert "security.W004" in result.stderr


def test_it_counts_sign_in_rate_limits_in_a_cache_every_process_shares() -> None:
    # allauth keeps its rate-limit counters in the default cache; a per-process cache would
    # give every gunicorn worker its own allowance.
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.db.DatabaseCache"
