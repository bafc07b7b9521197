"""Settings, configured by environment variables (see ``.env.example``).

Each variable goes through a small typed reader that fails loudly, naming the variable, when
its value cannot be parsed. Secrets also accept ``NAME_FILE`` (a path, for Docker secrets).
Variables already set in the environment win over the ``.env`` file next to ``manage.py``.
With ``DEBUG`` off the portal refuses to start on an insecure configuration.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from connections_app.crypto import KeyConfigError, parse_keys
from connections_app.environments import url_allowed

BASE_DIR = Path(__file__).resolve().parent.parent

if os.environ.get("PORTAL_SKIP_DOTENV", "") != "1":
    load_dotenv(BASE_DIR / ".env", override=False)


class ConfigError(ImproperlyConfigured):
    """A configuration value is missing or wrong; the message names the variable."""


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean: use true or false")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


def env_secret(name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (never both)."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        if os.environ.get(name):
            raise ConfigError(f"set either {name} or {name}_FILE, not both")
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path!r} cannot be read: {exc.strerror}") from None
    return env_str(name)


def env_url(name: str, default: str, *, loopback_http: bool = False) -> str:
    """An https:// URL; with ``loopback_http``, plain http:// is also fine for a loopback host."""
    value = env_str(name, default)
    if not url_allowed(value, loopback_http=loopback_http):
        hint = "https:// (http:// only for a loopback host)" if loopback_http else "https://"
        raise ConfigError(f"{name}={value!r} is not a usable URL: use {hint}")
    return value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def env_int_between(name: str, default: int, low: int, high: int, unit: str) -> int:
    value = env_int(name, default)
    if not low <= value <= high:
        raise ConfigError(f"{name}={value} is out of range: use {low} to {high} {unit}")
    return value


DEBUG = env_bool("DEBUG", False)

INSECURE_SECRET_KEYS = {"", "change-me", "changeme", "django-insecure-development-only"}
SECRET_KEY = env_secret("SECRET_KEY")
if SECRET_KEY in INSECURE_SECRET_KEYS or SECRET_KEY.startswith("django-insecure"):
    if not DEBUG:
        raise ConfigError(
            "SECRET_KEY is missing or a default: set a long random value "
            "(`make run` writes one to .env; see README 'Deploy')"
        )
    SECRET_KEY = SECRET_KEY or "django-insecure-development-only"
elif not DEBUG and (len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5):
    # Django signs sessions, password-reset links and CSRF tokens with it.
    raise ConfigError(
        "SECRET_KEY is too short or too simple: use at least 50 random characters "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )

_raw_encryption_keys = env_secret("ENCRYPTION_KEYS")
try:
    parse_keys(_raw_encryption_keys)
except KeyConfigError as exc:
    raise ConfigError(
        f"{exc} (ENCRYPTION_KEYS encrypts stored secrets; see README 'Encryption keys')"
    ) from None
ENCRYPTION_KEYS = _raw_encryption_keys

PORT = env_int("PORT", 8000)
_site = urlsplit(env_url("SITE_URL", f"http://127.0.0.1:{PORT}", loopback_http=True))
# Scheme and host as the browser sends them back (lower case), for the redirect URI and CSRF.
SITE_URL = f"{_site.scheme}://{_site.netloc.lower()}{_site.path}".rstrip("/")
if not DEBUG and urlsplit(SITE_URL).scheme != "https":
    raise ConfigError(
        "SITE_URL must be an https:// address in production (Kroger sends shoppers back to it)"
    )
OAUTH_REDIRECT_URI = f"{SITE_URL}/oauth/callback/"
_site_host = urlsplit(SITE_URL).hostname or "localhost"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS") or [_site_host]
if DEBUG:
    ALLOWED_HOSTS += ["localhost", "127.0.0.1", "[::1]"]
CSRF_TRUSTED_ORIGINS = [SITE_URL]

# Client secrets and tokens travel to these: https always, even to a stand-in on loopback (a
# local one trusts its own CA through REQUESTS_CA_BUNDLE, as `make demo` and the tests do).
KROGER_BASE_URLS = {
    "production": env_url("KROGER_PRODUCTION_URL", "https://api.kroger.com/v1/").rstrip("/") + "/",
    "certification": env_url("KROGER_CERTIFICATION_URL", "https://api-ce.kroger.com/v1/").rstrip(
        "/"
    )
    + "/",
}
# Refreshes wait for Kroger under a row lock, and other callers wait up to twice this for it.
KROGER_TIMEOUT_SECONDS = env_int_between("KROGER_TIMEOUT_SECONDS", 15, 1, 120, "seconds")
# How long the hourly counts of API calls and token hand-outs are kept.
USAGE_RETENTION_DAYS = env_int("USAGE_RETENTION_DAYS", 90)
if USAGE_RETENTION_DAYS < 1:
    raise ConfigError(f"USAGE_RETENTION_DAYS={USAGE_RETENTION_DAYS} must be 1 or more")
# The keep-alive policy (README "The worker"): a connection whose token was handed out within
# KEEP_WARM_SECONDS is renewed before its access token expires; any other authorization-code
# grant is renewed KEEP_ALIVE_HOURS after its last renewal (Kroger's last about six months).
KEEP_WARM_SECONDS = env_int("KEEP_WARM_SECONDS", 3600)
if KEEP_WARM_SECONDS < 0:
    raise ConfigError(f"KEEP_WARM_SECONDS={KEEP_WARM_SECONDS} must be 0 (never warm) or more")
KEEP_ALIVE_HOURS = env_int("KEEP_ALIVE_HOURS", 24)
if not 1 <= KEEP_ALIVE_HOURS <= 24 * 90:
    raise ConfigError(
        f"KEEP_ALIVE_HOURS={KEEP_ALIVE_HOURS} must be between 1 and 2160 (90 days): Kroger's "
        "refresh tokens live about six months"
    )

# Webhooks: deliveries go only to public addresses unless this is on (receivers inside the
# team's own network); the delivery log is kept this many days.
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)
WEBHOOK_LOG_DAYS = env_int("WEBHOOK_LOG_DAYS", 30)
if not 1 <= WEBHOOK_LOG_DAYS <= 3650:
    raise ConfigError(f"WEBHOOK_LOG_DAYS={WEBHOOK_LOG_DAYS} must be between 1 and 3650 days")
# /metrics answers only with this bearer token; without it the endpoint does not exist.
METRICS_TOKEN = env_secret("METRICS_TOKEN")

ALLOWED_SIGNUP_DOMAINS = [d.lower().lstrip("@") for d in env_list("ALLOWED_SIGNUP_DOMAINS")]


def oidc_providers(name: str, issuer: str, client_id: str, secret: str) -> dict[str, Any]:
    """allauth's configuration of the one OpenID Connect app (``provider_id`` ``sso``); its
    endpoints come from the issuer's discovery document."""
    return {
        "openid_connect": {
            "OAUTH_PKCE_ENABLED": True,
            "APPS": [
                {
                    "provider_id": "sso",
                    "name": name,
                    "client_id": client_id,
                    "secret": secret,
                    "settings": {"server_url": issuer, "token_auth_method": "client_secret_basic"},
                }
            ],
        }
    }


SSO_OIDC_NAME = env_str("SSO_OIDC_NAME")
SSO_OIDC_ISSUER = env_str("SSO_OIDC_ISSUER")
SSO_OIDC_CLIENT_ID = env_str("SSO_OIDC_CLIENT_ID")
SSO_OIDC_CLIENT_SECRET = env_secret("SSO_OIDC_CLIENT_SECRET")
_sso_values = {
    "SSO_OIDC_NAME": SSO_OIDC_NAME,
    "SSO_OIDC_ISSUER": SSO_OIDC_ISSUER,
    "SSO_OIDC_CLIENT_ID": SSO_OIDC_CLIENT_ID,
    "SSO_OIDC_CLIENT_SECRET": SSO_OIDC_CLIENT_SECRET,
}
if any(_sso_values.values()) and not all(_sso_values.values()):
    missing = ", ".join(name for name, value in _sso_values.items() if not value)
    raise ConfigError(f"SSO is half configured: also set {missing} (see README 'Team SSO')")
if SSO_OIDC_ISSUER:
    env_url("SSO_OIDC_ISSUER", "")
SOCIALACCOUNT_PROVIDERS = (
    oidc_providers(SSO_OIDC_NAME, SSO_OIDC_ISSUER, SSO_OIDC_CLIENT_ID, SSO_OIDC_CLIENT_SECRET)
    if SSO_OIDC_ISSUER
    else {}
)
# The address to register at the identity provider.
SSO_OIDC_REDIRECT_URI = f"{SITE_URL}/accounts/oidc/sso/login/callback/"
# Values of the ``groups`` claim that make someone an editor or an administrator at each SSO
# sign-in. Unset, roles stay as administrators set them.
SSO_OIDC_EDITORS_GROUPS = env_list("SSO_OIDC_EDITORS_GROUPS")
SSO_OIDC_ADMINS_GROUPS = env_list("SSO_OIDC_ADMINS_GROUPS")
PASSWORD_SIGN_IN = env_bool("PASSWORD_SIGN_IN", True)
BREAK_GLASS_PASSWORD_SIGN_IN = env_bool("BREAK_GLASS_PASSWORD_SIGN_IN", False)
if not PASSWORD_SIGN_IN and not SSO_OIDC_ISSUER:
    raise ConfigError("PASSWORD_SIGN_IN=false needs SSO: set the SSO_OIDC_* variables")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "allauth.usersessions",
    "csp",
    "connections_app",
]

MIDDLEWARE = [
    # /api/ runs its own, shorter list (connections_app.middleware.API_MIDDLEWARE).
    "connections_app.middleware.ApiMiddlewareOnly",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "connections_app.middleware.refuse_nul_bytes",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "connections_app.middleware.UnreadableSecretMiddleware",
    "connections_app.mfa.MFARequiredMiddleware",
    "connections_app.middleware.method_not_allowed_page",
]

ROOT_URLCONF = "connections_app.urls"
WSGI_APPLICATION = "connections_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "connections_app.context_processors.sign_in",
                "connections_app.site_address.site_address",
            ],
        },
    },
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            env_str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
            conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
            conn_health_checks=True,
        )
    }
except ValueError as exc:
    raise ConfigError(f"DATABASE_URL cannot be parsed: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # SQLite ignores SELECT ... FOR UPDATE: immediate transactions serialize writers instead.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["CONN_MAX_AGE"] = 0
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg may prepare statements: it then prepares the few the code asks it to (the key
    # queries every API call starts with, ``models._first_row``). Django's own queries are
    # bound client-side and are never prepared, whatever this says.
    DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = 5

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# One cache shared by every gunicorn worker and the token worker: allauth counts sign-in
# attempts for its rate limits here (a per-process cache would multiply each limit).
# `manage.py createcachetable` creates its table; the container entry script runs it.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "portal_cache",
    }
}

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

ACCOUNT_ADAPTER = "connections_app.accounts.AccountAdapter"
ACCOUNT_FORMS = {"signup": "connections_app.accounts.SignupForm"}
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
# Open sign-up trusts the address's domain, so the address must be proven: otherwise anyone
# could sign up as someone@allowed-domain without owning that mailbox.
ACCOUNT_EMAIL_VERIFICATION = env_str(
    "ACCOUNT_EMAIL_VERIFICATION", "mandatory" if ALLOWED_SIGNUP_DOMAINS else "none"
)
if ACCOUNT_EMAIL_VERIFICATION not in {"none", "optional", "mandatory"}:
    raise ConfigError("ACCOUNT_EMAIL_VERIFICATION must be none, optional or mandatory")
if ALLOWED_SIGNUP_DOMAINS and ACCOUNT_EMAIL_VERIFICATION != "mandatory" and not DEBUG:
    raise ConfigError(
        "ACCOUNT_EMAIL_VERIFICATION must be mandatory when ALLOWED_SIGNUP_DOMAINS is set: "
        "sign-up by domain is safe only for addresses people have proven they own"
    )
SOCIALACCOUNT_ADAPTER = "connections_app.accounts.SocialAccountAdapter"
# The identity provider vouches for the address (``email_verified``): sign-ups through it need
# no e-mail confirmation, and an account with the same address is signed in and linked.
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_REQUESTS_TIMEOUT = 10
# Second factors (allauth.mfa): an authenticator app, passkeys or security keys, and recovery
# codes. Their secrets are encrypted with ENCRYPTION_KEYS (connections_app/mfa.py).
MFA_ADAPTER = "connections_app.mfa.MFAAdapter"
MFA_SUPPORTED_TYPES = ["totp", "webauthn", "recovery_codes"]
MFA_TOTP_ISSUER = "Kroger connections"
MFA_TOTP_TOLERANCE = 1  # one 30-second step either way, for phones whose clock drifts
# "Sign in with a passkey": a passkey added as passwordless (it checks a PIN or biometrics)
# signs in alone. It is a password sign-in for PASSWORD_SIGN_IN; read at start, as allauth
# registers its URL then.
MFA_PASSKEY_LOGIN_ENABLED = env_bool("PASSKEY_SIGN_IN", True)
# Who must have a second factor: none, editors (editors and administrators) or all.
MFA_REQUIRED = env_str("MFA_REQUIRED", "none" if DEBUG else "editors")
if MFA_REQUIRED not in {"none", "editors", "all"}:
    raise ConfigError(f"MFA_REQUIRED={MFA_REQUIRED!r} must be none, editors or all")
# Ask people to confirm it is them before changing a client secret, deleting, disconnecting,
# service keys, webhook endpoints and any change in the admin (allauth's reauthentication; off
# only in the tests of other things).
REAUTHENTICATE_SENSITIVE_CHANGES = True
# How: the password, a second factor, or signing in again at the identity provider (for SSO
# accounts). Not a code by e-mail: e-mail may not be set up, and it adds nothing to those.
ACCOUNT_REAUTHENTICATION_METHODS = ["password", "mfa", "socialaccount"]
# allauth's own account changes too: adding, removing or making primary an e-mail address (a
# new address could receive a password reset) and connecting or removing an SSO account.
ACCOUNT_REAUTHENTICATION_REQUIRED = True
# Each sign-in is recorded (when, address, browser); "last seen" is not, which would cost a
# database write on every page.
USERSESSIONS_TRACK_ACTIVITY = False
USERSESSIONS_ADAPTER = "connections_app.accounts.UserSessionsAdapter"
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = True
ACCOUNT_SESSION_REMEMBER = None
LOGIN_REDIRECT_URL = "/"
LOGIN_URL = "account_login"

EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_secret("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", f"Kroger connections <noreply@{_site_host}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# Security headers. The policy allows no inline script anywhere, in development too, so that
# what works in development works in production.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        # Forms redirect to Kroger's consent page and to the identity provider's sign-in.
        "form-action": [
            "'self'",
            *[url for url in KROGER_BASE_URLS.values()],
            *([_origin(SSO_OIDC_ISSUER)] if SSO_OIDC_ISSUER else []),
        ],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # Strict would drop the session on the return from Kroger.
CSRF_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 60 * 60 * 12)

# Behind the TLS proxy every request arrives from the proxy's address: allauth's failed
# sign-in limit per address would then count everyone together, and one stranger's bad
# passwords would lock every person out. With TRUSTED_PROXY_COUNT proxies in front (each
# appending to X-Forwarded-For), or TRUSTED_CLIENT_IP_HEADER set by the last one, allauth
# counts the client's own address; the limit per account stays as it is.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if ALLAUTH_TRUSTED_PROXY_COUNT < 0:
    raise ConfigError("TRUSTED_PROXY_COUNT must be 0 (no proxy) or the number of proxies")
ALLAUTH_TRUSTED_CLIENT_IP_HEADER = env_str("TRUSTED_CLIENT_IP_HEADER") or None

if not DEBUG:
    _proxy_header = env_str("SECURE_PROXY_SSL_HEADER")  # e.g. "X-Forwarded-Proto: https"
    if _proxy_header:
        name, sep, value = _proxy_header.partition(":")
        if not sep or not name.strip() or not value.strip():
            raise ConfigError("SECURE_PROXY_SSL_HEADER must look like 'X-Forwarded-Proto: https'")
        SECURE_PROXY_SSL_HEADER = (
            "HTTP_" + name.strip().upper().replace("-", "_"),
            value.strip(),
        )
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SESSION_COOKIE_NAME = "__Host-sessionid"
    CSRF_COOKIE_NAME = "__Host-csrftoken"

LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
if LOG_LEVEL not in logging.getLevelNamesMapping() or LOG_LEVEL == "NOTSET":
    raise ConfigError(f"LOG_LEVEL={LOG_LEVEL!r} is not a level: use DEBUG, INFO, WARNING or ERROR")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact_secrets": {"()": "connections_app.logging.RedactSecretsFilter"},
        "queryless_request_line": {"()": "connections_app.logging.QuerylessRequestLineFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "stdout": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": "plain",
            "filters": ["redact_secrets"],
        },
    },
    "root": {"handlers": ["stdout"], "level": LOG_LEVEL},
    "loggers": {
        # At DEBUG these log request bodies and tokens.
        "oauthlib": {"level": "WARNING"},
        "requests_oauthlib": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
        # The development server's request lines (`make run`), without query strings.
        "django.server": {
            "handlers": ["stdout"],
            "level": "INFO",
            "propagate": False,
            "filters": ["queryless_request_line"],
        },
    },
}
DEFAULT_EXCEPTION_REPORTER_FILTER = "connections_app.logging.SecretsExceptionReporterFilter"
DEFAULT_EXCEPTION_REPORTER = "connections_app.logging.SecretsExceptionReporter"
