"""Test settings: the real settings module with safe, fixed defaults for the environment."""

from __future__ import annotations

import os

os.environ["PORTAL_SKIP_DOTENV"] = "1"
os.environ.setdefault("DEBUG", "false")
os.environ.setdefault("SECRET_KEY", "tests-" + "x" * 50)
os.environ.setdefault("ENCRYPTION_KEYS", "test1:2sHwBEPp0Ntb3yrYCdNDJvhJ8vXsQpVXJ9nq1v2fQ9c")
os.environ.setdefault("SITE_URL", "https://portal.test")
os.environ.setdefault("ALLOWED_HOSTS", "portal.test,testserver,127.0.0.1,localhost")
# The test database: TEST_DATABASE_URL (PostgreSQL in CI) or SQLite.
if os.environ.get("TEST_DATABASE_URL"):
    os.environ["DATABASE_URL"] = os.environ["TEST_DATABASE_URL"]
else:
    os.environ.pop("DATABASE_URL", None)

from connections_app.settings import *  # noqa: F403

SECURE_SSL_REDIRECT = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
WHITENOISE_AUTOREFRESH = True
WHITENOISE_USE_FINDERS = True
# Only the tests about second factors require them (tests/test_mfa_required.py).
MFA_REQUIRED = "none"
# Most tests sign people in with force_login; tests/test_reauthentication.py turns this on.
REAUTHENTICATE_SENSITIVE_CHANGES = False
