"""Every HTTP call to Kroger: one function per endpoint, each with a timeout, and its errors.

Base URLs come only from ``settings.KROGER_BASE_URLS`` (never from user input). Every failure
becomes a ``KrogerError`` whose ``message`` tells people what most likely went wrong and what
to check; no message, log line or exception here ever holds a secret.

OAuth 2.0 is spoken through requests-oauthlib's ``OAuth2Session`` (oauthlib underneath). It
builds the consent page URL and the token requests of the three grants (HTTP Basic client
authentication, PKCE verifier, refresh, client credentials), puts bearer tokens on API calls,
refuses anything but https, and raises oauthlib's typed errors (``InvalidGrantError``, ...)
for an RFC 6749 error answer; ``_token_error`` maps those onto ``KrogerError`` kinds. What
oauthlib does not judge stays here: transport failures (network, timeout, 5xx, 429, not JSON)
are caught by a compliance hook before oauthlib reads the answer, and ``_token_response``
alone turns a token answer into a ``TokenResponse``. The ``oauthlib`` and
``requests_oauthlib`` loggers print secrets at DEBUG: settings keep them at WARNING. The
proxy's ``call_api`` forwards calls as they are, on urllib3's keep-alive connections.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import urllib3
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from oauthlib.oauth2 import (
    BackendApplicationClient,
    InsecureTransportError,
    InvalidClientError,
    InvalidGrantError,
    InvalidScopeError,
    OAuth2Error,
    ServerError,
    TemporarilyUnavailableError,
    UnauthorizedClientError,
)
from requests.auth import HTTPBasicAuth
from requests_oauthlib import OAuth2Session

from connections_app.environments import Environment, url_allowed

logger = logging.getLogger(__name__)

TRANSIENT_KINDS = frozenset({"network", "timeout", "server", "garbage", "rate_limited"})

# Token requests: who is calling, for messages that fit the situation.
AUTHORIZATION_CODE = "authorization_code"
REFRESH = "refresh_token"
CLIENT_CREDENTIALS = "client_credentials"
API = "api"


class KrogerError(Exception):
    """A call to Kroger failed. ``message`` is for people and never holds a secret."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        status: int | None = None,
        grant: str = API,
        sent: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status
        self.message = message
        self.grant = grant
        # False only when the request certainly never left: no connection (refused, DNS,
        # TLS handshake). A timeout or a dropped connection may have reached Kroger.
        self.sent = sent

    def __repr__(self) -> str:
        return f"KrogerError(kind={self.kind!r}, status={self.status!r})"

    @property
    def transient(self) -> bool:
        """Worth retrying later: Kroger or the network was unwell, not our credentials."""
        return self.kind in TRANSIENT_KINDS

    @property
    def grant_dead(self) -> bool:
        """The stored grant can no longer be used: someone has to authorize again. Only
        ``invalid_grant`` says so (a refresh token used already, expired or revoked); any
        other refusal, even an HTTP 400, leaves the grant to be tried again."""
        return self.kind == "invalid_grant"


@dataclass(frozen=True)
class TokenResponse:
    """A token answer as far as it can be trusted.

    ``distrusted`` is empty for a sound answer. Otherwise it says (for people; never a value)
    what was wrong with an answer that still carried a well-formed refresh token: Kroger has
    rotated the refresh token, so that one must be kept, and nothing else in the answer is
    used (``access_token`` is empty and ``expires_in`` 0).
    """

    access_token: str = field(repr=False)
    expires_in: int
    token_type: str
    refresh_token: str | None = field(default=None, repr=False)
    scope: str | None = None
    distrusted: str = ""


# --- PKCE and the consent page ------------------------------------------------------------


def new_state() -> str:
    """A ``state`` value with 256 bits of randomness."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """A PKCE verifier (RFC 7636: 43-128 unreserved characters); 64 chars, 384 bits."""
    return secrets.token_urlsafe(48)


def code_challenge(code_verifier: str) -> str:
    """The S256 challenge of a verifier: BASE64URL(SHA256(verifier)) without padding."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(
    *,
    environment: str,
    client_id: str,
    redirect_uri: str,
    scopes: list[str],
    state: str,
    code_challenge: str,
    banner: str = "",
) -> str:
    """Where to send the browser for the shopper's consent (no HTTP call is made here).

    ``state`` and the PKCE challenge are the portal's own, kept with the attempt: the session
    made at the callback is a new one, so nothing the library would generate is relied on.
    """
    session = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=scopes)
    extra = {"code_challenge": code_challenge, "code_challenge_method": "S256"}
    if banner:
        extra["banner"] = banner
    try:
        url, _ = session.authorization_url(
            f"{_base_url(environment)}connect/oauth2/authorize", state=state, **extra
        )
    except InsecureTransportError:
        raise _insecure(environment) from None
    return str(url)


# --- Token endpoint ------------------------------------------------------------------------
#
# sensitive_variables: Django's error reports (mailed to ADMINS, logged with a 500) show every
# frame's local variables; the names listed are replaced by stars in the frame of the
# decorated function and in every undecorated frame it calls (requests-oauthlib's among them).


@sensitive_variables("client_secret", "code", "code_verifier")
def exchange_code(
    *,
    environment: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
) -> TokenResponse:
    """Trade an authorization code for tokens (with the PKCE verifier and the same redirect URI)."""
    with _session(client_id, redirect_uri=redirect_uri) as session:
        return _token_request(
            environment,
            AUTHORIZATION_CODE,
            session,
            client_id,
            client_secret,
            lambda auth, timeout: session.fetch_token(
                _token_url(environment),
                code=code,
                code_verifier=code_verifier,
                auth=auth,
                include_client_id=False,
                timeout=timeout,
            ),
        )


@sensitive_variables("client_secret", "refresh_token")
def refresh_token(
    *, environment: str, client_id: str, client_secret: str, refresh_token: str
) -> TokenResponse:
    """Use a refresh token. Kroger rotates them: the one passed in is dead afterwards."""
    with _session(client_id) as session:
        return _token_request(
            environment,
            REFRESH,
            session,
            client_id,
            client_secret,
            lambda auth, timeout: session.refresh_token(
                _token_url(environment), refresh_token=refresh_token, auth=auth, timeout=timeout
            ),
        )


@sensitive_variables("client_secret")
def client_credentials(
    *, environment: str, client_id: str, client_secret: str, scopes: list[str]
) -> TokenResponse:
    """An app token without a shopper (no refresh token: fetch a new one when it expires)."""
    with _session(client=BackendApplicationClient(client_id)) as session:
        return _token_request(
            environment,
            CLIENT_CREDENTIALS,
            session,
            client_id,
            client_secret,
            # The scopes go with the request, not the session: oauthlib would otherwise refuse
            # an answer whose scope differs from the one asked for, which is Kroger's to decide.
            lambda auth, timeout: session.fetch_token(
                _token_url(environment),
                scope=scopes,
                auth=auth,
                include_client_id=False,
                timeout=timeout,
            ),
        )


# Every local here can carry a secret (the credentials, the session holding the request), and
# so can every frame of requests-oauthlib and requests below it: all are hidden from reports.
@sensitive_variables()
def _token_request(
    environment: str,
    grant: str,
    session: OAuth2Session,
    client_id: str,
    client_secret: str,
    call: Callable[[HTTPBasicAuth, int], object],
) -> TokenResponse:
    """Make one token request with ``call(auth, timeout)`` and return ``_token_response``'s
    verdict on the answer.

    A compliance hook sees Kroger's answer before oauthlib does: transport failures and
    answers that are not JSON become ``KrogerError`` there, a token answer goes to
    ``_token_response``, and an RFC 6749 error answer is left to oauthlib, whose typed error
    ``_token_error`` then maps with the status and body the hook kept.
    """
    auth = _basic_auth(client_id, client_secret, grant)
    answered: list[TokenResponse] = []
    refused: list[tuple[int, dict[str, Any]]] = []

    def inspect(response: requests.Response) -> requests.Response:
        _check_transport(environment, response, grant)
        body = _json_body(environment, response, grant)
        if "error" in body:
            refused.append((response.status_code, body))
        elif response.status_code != 200:
            raise _log(_token_error(environment, response.status_code, body, grant))
        else:
            answered.append(_token_response(environment, body, grant))
        return response

    session.register_compliance_hook("access_token_response", inspect)
    session.register_compliance_hook("refresh_token_response", inspect)
    try:
        _send(environment, grant, lambda timeout: call(auth, timeout))
    except Exception as problem:
        # oauthlib reads the answer again after the hook and may stumble on what the portal
        # does not use (a field of the wrong type, a missing access token, a lifetime too
        # large to add to the clock, a scope it did not expect): once _token_response has
        # judged the answer, that verdict stands, since a rotated refresh token must not be
        # lost to a parsing quirk.
        if answered:
            return answered[0]
        if isinstance(problem, OAuth2Error) and refused:
            status, body = refused[0]
            raise _log(_token_error(environment, status, body, grant, problem)) from None
        raise
    return answered[0]


def _basic_auth(client_id: str, client_secret: str, grant: str) -> HTTPBasicAuth:
    try:  # HTTP Basic credentials are sent as Latin-1: requests cannot encode anything else.
        f"{client_id}:{client_secret}".encode("latin-1")
    except UnicodeEncodeError:
        raise _log(
            KrogerError(
                "invalid_client",
                "The client ID or client secret holds characters that cannot be sent to Kroger. "
                "Re-enter the client ID and secret of the OAuth 2.0 client exactly as "
                "developer.kroger.com shows them.",
                grant=grant,
            )
        ) from None
    return HTTPBasicAuth(client_id, client_secret)


# Bounds a real Kroger answer never comes near: anything outside them is not a usable token.
MAX_TOKEN_LENGTH = 4096
MAX_EXPIRES_IN = 24 * 60 * 60  # Kroger's access tokens last 30 minutes
MAX_SCOPE_LENGTH = 1000  # what Connection.granted_scopes holds
# RFC 6750 section 2.1 b64token: what a bearer token may be made of (no space, no control).
TOKEN_RE = re.compile(r"\A[A-Za-z0-9\-._~+/]+=*\Z")
# RFC 6749 section 3.3 scope-tokens, separated by single spaces.
SCOPE_RE = re.compile(r"\A[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*\Z")


def _well_formed_token(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TOKEN_LENGTH and bool(TOKEN_RE.match(value))


@sensitive_variables("body", "access_token", "refresh")
def _token_response(environment: str, body: dict[str, Any], grant: str) -> TokenResponse:
    """The one place a token answer's JSON becomes a ``TokenResponse`` (or a ``KrogerError``).

    Every field is checked against bounds a real Kroger answer never comes near, before
    anything is stored. Kroger invalidates the old refresh token the moment it answers, so a
    well-formed refresh token is returned whatever else is wrong, marked ``distrusted`` (and
    nothing else of the answer is used); an answer with a problem and no usable refresh token
    is "garbage" (a transient KrogerError). A scope that is not a scope is ignored, as if
    Kroger had sent none.
    """
    refresh = body.get("refresh_token")
    if refresh == "":
        refresh = None  # as if omitted: the stored one is kept
    problems = []
    if refresh is not None and not _well_formed_token(refresh):
        problems.append("with a malformed refresh token")
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        problems.append("without an access token")
    elif not _well_formed_token(access_token):
        problems.append("with a malformed access token")
    expires_in = _expires_in(body.get("expires_in"))
    if expires_in is None:
        # A token without a known, positive lifetime would be refreshed on every use.
        problems.append(f"without a valid expires_in (1 to {MAX_EXPIRES_IN} seconds)")
    token_type = body.get("token_type", "bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        problems.append("with a token_type other than bearer")
    scope = body.get("scope")
    if scope is not None and not (
        isinstance(scope, str)
        and (scope == "" or (len(scope) <= MAX_SCOPE_LENGTH and SCOPE_RE.match(scope)))
    ):
        logger.warning("Kroger token answer with a scope that is not one (grant=%s)", grant)
        scope = None
    if not problems:
        assert isinstance(access_token, str) and expires_in is not None
        return TokenResponse(
            access_token=access_token,
            expires_in=expires_in,
            token_type="bearer",  # noqa: S106 (a token type, not a secret)
            refresh_token=refresh,
            scope=scope,
        )
    what = "a token response " + " and ".join(problems)
    if refresh is None or "with a malformed refresh token" in problems:
        raise _log(_garbage(environment, 200, grant, what))
    logger.warning("Kroger token answer distrusted (grant=%s): %s", grant, what)
    return TokenResponse(
        access_token="",
        expires_in=0,
        token_type="bearer",  # noqa: S106 (a token type, not a secret)
        refresh_token=refresh,
        distrusted=f"Kroger ({Environment.label_of(environment)}) sent {what}",
    )


def _expires_in(value: Any) -> int | None:
    """Seconds the token lasts (an integer, or a string of one), or None unless it is between
    1 and MAX_EXPIRES_IN."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= MAX_EXPIRES_IN else None


def _token_error(
    environment: str,
    status: int,
    body: dict[str, Any],
    grant: str,
    refusal: OAuth2Error | None = None,
) -> KrogerError:
    """What a refused token request means: from oauthlib's typed error for an RFC 6749 error
    answer, else from the HTTP status. Kroger's own description is quoted, shortened."""
    env = Environment.label_of(environment)
    description = _short(str(body.get("error_description") or ""))
    said = f" Kroger said: {description}" if description else ""
    if isinstance(refusal, TemporarilyUnavailableError | ServerError):
        # RFC 6749 section 5.2 lets a token endpoint say "not now" with a 400: Kroger was
        # unwell, the grant is not refused, and a later try may well succeed.
        return KrogerError(
            "server",
            f"Kroger ({env}) could not issue a token just now ({refusal.error}, HTTP {status}). "
            f"The portal tries again in a few minutes.{said}",
            status=status,
            grant=grant,
        )
    if "redirect_uri" in description.lower() or "redirect uri" in description.lower():
        return KrogerError(
            "redirect_uri",
            "Kroger refused the redirect URI. Check that the redirect URI registered for this "
            f"app at developer.kroger.com is exactly {settings.OAUTH_REDIRECT_URI}.{said}",
            status=status,
            grant=grant,
        )
    if isinstance(refusal, InvalidClientError) or status == 401:
        return KrogerError(
            "invalid_client",
            "Kroger did not accept the client ID and secret. Check the client secret, and that "
            f"the app is registered for the {env} environment (credentials of one environment "
            "are refused by the other).",
            status=status,
            grant=grant,
        )
    if isinstance(refusal, InvalidGrantError):
        if grant == REFRESH:
            message = (
                "Kroger refused the refresh token: it was used already, expired or was revoked. "
                "Authorize the connection again."
            )
        else:
            message = (
                "Kroger refused the authorization code: it expired or was already used. "
                "Start the authorization again."
            )
        return KrogerError("invalid_grant", message + said, status=status, grant=grant)
    if isinstance(refusal, InvalidScopeError):
        return KrogerError(
            "invalid_scope",
            "Kroger refused the requested scopes. Check the scopes assigned to the app at "
            "developer.kroger.com, and that shopper scopes (cart, profile) are not requested "
            f"with client credentials.{said}",
            status=status,
            grant=grant,
        )
    if isinstance(refusal, UnauthorizedClientError):
        return KrogerError(
            "error",
            "Kroger does not allow this app to use this grant type. Check the app's settings "
            f"at developer.kroger.com.{said}",
            status=status,
            grant=grant,
        )
    if status == 403:
        return KrogerError(
            "forbidden",
            f"Kroger refused the request (HTTP 403). Check the app's access in {env}.{said}",
            status=status,
            grant=grant,
        )
    error = _short(str(refusal.error or "")) if refusal is not None else ""
    label = f"{error} (HTTP {status})" if error else f"HTTP {status}"
    return KrogerError(
        "error", f"Kroger refused the token request: {label}.{said}", status=status, grant=grant
    )


# --- API endpoints -------------------------------------------------------------------------


@sensitive_variables("access_token")
def get_profile(*, environment: str, access_token: str) -> dict[str, Any]:
    """The shopper's profile; Kroger forbids storing the ID, so callers must not keep it."""
    return _api_get(environment, "identity/profile", access_token, {})


@sensitive_variables("access_token")
def get_locations(
    *, environment: str, access_token: str, zip_code: str = "45202"
) -> dict[str, Any]:
    return _api_get(environment, "locations", access_token, {"filter.zipCode.near": zip_code})


@sensitive_variables("access_token")
def get_products(*, environment: str, access_token: str, term: str = "milk") -> dict[str, Any]:
    return _api_get(environment, "products", access_token, {"filter.term": term})


@sensitive_variables("access_token", "session", "response", "body")
def _api_get(
    environment: str, path: str, access_token: str, params: dict[str, str]
) -> dict[str, Any]:
    env = Environment.label_of(environment)
    # The session puts the token on the request as a bearer header.
    url = f"{_base_url(environment)}{path}"
    with _session(token={"access_token": access_token, "token_type": "Bearer"}) as session:
        response = _send(
            environment,
            API,
            lambda timeout: session.get(
                url, params=params, headers={"Accept": "application/json"}, timeout=timeout
            ),
        )
    _check_transport(environment, response, API)
    status = response.status_code
    if status == 401:
        raise _log(
            KrogerError(
                "unauthorized",
                "Kroger refused the access token: it expired or was revoked. Refresh the token "
                "or authorize the connection again.",
                status=status,
            )
        )
    if status == 403:
        raise _log(
            KrogerError(
                "forbidden",
                f"Kroger refused {path}: the token lacks a required scope, or the app may not "
                f"use this API in {env}. Check the scopes assigned to the app and granted to "
                "the connection.",
                status=status,
            )
        )
    body = _json_body(environment, response, API)
    if status != 200:
        reason = _short(str(_api_reason(body)))
        said = f" Kroger said: {reason}" if reason else ""
        raise _log(
            KrogerError("error", f"Kroger refused {path} (HTTP {status}).{said}", status=status)
        )
    return body


def _api_reason(body: dict[str, Any]) -> Any:
    errors = body.get("errors")
    if isinstance(errors, dict):
        return errors.get("reason") or errors.get("code") or ""
    return body.get("error_description") or body.get("error") or ""


# --- Transport -----------------------------------------------------------------------------

T = TypeVar("T")


def _base_url(environment: str) -> str:
    """The configured base URL, ending in '/'; always https (settings refuse anything else,
    and so does oauthlib: this check covers the proxy's calls too, which do not go through it)."""
    if environment not in Environment.values:
        raise KrogerError("error", f"Unknown Kroger environment {environment!r}.")
    url = Environment(environment).base_url
    if not url_allowed(url, loopback_http=False):
        raise _insecure(environment)
    return url


def _token_url(environment: str) -> str:
    return f"{_base_url(environment)}connect/oauth2/token"


class _SharedAdapter(requests.adapters.HTTPAdapter):
    """The connection pool of every token request and test call: each has a session of its
    own (a new OAuth2Session, so nothing of one request carries over to the next), but they
    reuse kept-alive TLS connections to Kroger instead of a handshake each. Closing a session
    leaves the pool open: it belongs to the process."""

    def close(self) -> None:
        pass


_shared_adapter = _SharedAdapter(pool_maxsize=32)  # run_worker --concurrency is at most 32


def _session(client_id: str | None = None, **kwargs: Any) -> OAuth2Session:
    session = OAuth2Session(client_id, **kwargs)
    # A redirect from Kroger's API means a wrong base URL; following one would carry the
    # request (a code, a refresh token) somewhere else. It becomes TooManyRedirects instead.
    session.max_redirects = 0
    session.mount("https://", _shared_adapter)
    return session


def _insecure(environment: str) -> KrogerError:
    return _log(
        KrogerError(
            "error",
            f"The Kroger address for {environment} must use https://. Check "
            "KROGER_PRODUCTION_URL / KROGER_CERTIFICATION_URL.",
        )
    )


# Every local here can carry a secret (the request's auth, form and headers), and so can
# every frame of requests-oauthlib and requests below it: all of them are hidden from reports.
@sensitive_variables()
def _send(environment: str, grant: str, call: Callable[[int], T]) -> T:
    """Run ``call(timeout)``: network, TLS, redirect and plain-http failures become
    ``KrogerError`` (oauthlib's refusals and the hook's own errors pass through)."""
    env = Environment.label_of(environment)
    try:
        return call(settings.KROGER_TIMEOUT_SECONDS)
    except InsecureTransportError:
        raise _insecure(environment) from None
    except requests.Timeout:
        raise _log(
            KrogerError(
                "timeout",
                f"Kroger ({env}) did not answer within {settings.KROGER_TIMEOUT_SECONDS} "
                "seconds. Try again in a few minutes.",
                grant=grant,
            )
        ) from None
    except requests.TooManyRedirects as exc:
        status = exc.response.status_code if exc.response is not None else 0
        raise _log(_garbage(environment, status, grant, "a redirect")) from None
    except requests.RequestException as exc:
        message = (
            _THROUGH_PROXY.format(env=env)
            if isinstance(exc, requests.exceptions.ProxyError)
            else f"Could not reach Kroger ({env}): {type(exc).__name__}. Check this server's "
            "network and DNS, and the configured Kroger address."
        )
        raise _log(
            KrogerError("network", message, grant=grant, sent=not _never_sent(exc))
        ) from None


def _never_sent(exc: requests.RequestException) -> bool:
    """Whether requests failed before the request left (see ``_failed_before_sending``)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and _failed_before_sending(reason)


# urllib3 raises these only before a byte of the request left: no connection could be made
# (refused, unknown name), the TLS handshake failed, or the outgoing proxy (HTTPS_PROXY) could
# not be reached or refused the tunnel. A connection dropped later may have reached Kroger.
_UNSENT = (
    urllib3.exceptions.NewConnectionError,
    urllib3.exceptions.SSLError,
    urllib3.exceptions.ProxyError,
)


def _failed_before_sending(error: object) -> bool:
    return isinstance(error, _UNSENT)


_THROUGH_PROXY = (
    "Could not reach Kroger ({env}) through the outgoing proxy: check HTTPS_PROXY (its address "
    "and credentials) and NO_PROXY."
)


def _check_transport(environment: str, response: requests.Response, grant: str) -> None:
    """Kroger's budget spent (429) or Kroger unwell (5xx): worth retrying later."""
    env = Environment.label_of(environment)
    status = response.status_code
    if status == 429:
        raise _log(
            KrogerError(
                "rate_limited",
                "Kroger's daily rate limit for this app is spent (HTTP 429). It resets 24 hours "
                "after the first call of the day.",
                status=status,
                grant=grant,
            )
        )
    if status >= 500:
        raise _log(
            KrogerError(
                "server",
                f"Kroger ({env}) had a server error (HTTP {status}). Try again in a few minutes.",
                status=status,
                grant=grant,
            )
        )


def _json_body(environment: str, response: requests.Response, grant: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise _log(_garbage(environment, response.status_code, grant, "a reply that is not JSON"))
    return body


def _garbage(environment: str, status: int, grant: str, what: str) -> KrogerError:
    env = Environment.label_of(environment)
    return KrogerError(
        "garbage",
        f"Kroger ({env}) sent {what} (HTTP {status}). Check that the configured Kroger address "
        "is the API's base URL; if it is, Kroger may be having trouble: try again later.",
        status=status,
        grant=grant,
    )


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _log(error: KrogerError) -> KrogerError:
    # Only the kind, status and grant: messages never hold secrets, but stay terse in logs.
    logger.warning(
        "Kroger call failed: kind=%s status=%s grant=%s", error.kind, error.status, error.grant
    )
    return error


# --- The proxy: any API call, answered as Kroger answered it --------------------------------


@dataclass(frozen=True)
class ApiAnswer:
    """Kroger's answer to a proxied call, whatever its status."""

    status: int
    body: bytes = field(repr=False)
    content_type: str
    retry_after: int | None = None  # seconds, when Kroger sent Retry-After


_TRANSPORT_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


def _api_pool(base: str) -> urllib3.PoolManager:
    """The keep-alive connections of proxied calls to ``base`` (a TLS handshake per call would
    double the proxy's latency), shared by the process's threads. It keeps no cookies, so one
    connection's cookies never reach another's call. Calls go through urllib3 itself: a
    ``requests`` session spent about as much CPU preparing each call (merging settings,
    cookies and hooks the proxy has none of) as urllib3 spends sending it."""
    return _api_pool_for(base, tuple(os.environ.get(n) for n in _TRANSPORT_VARIABLES))


@functools.lru_cache(maxsize=16)
def _api_pool_for(base: str, environment: tuple[str | None, ...]) -> urllib3.PoolManager:
    """As ``requests`` would send to ``base``: through the proxy the environment names for it
    (``HTTPS_PROXY``, ``NO_PROXY``, ...), trusting ``REQUESTS_CA_BUNDLE`` or
    ``CURL_CA_BUNDLE``, else certifi's CAs. Made once per value of those variables."""
    bundle = (
        os.environ.get("REQUESTS_CA_BUNDLE")
        or os.environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )
    # One pool per host; above 32 threads at once, extra connections are closed after use.
    options: dict[str, Any] = {"num_pools": 4, "maxsize": 32}
    options["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    proxy = requests.utils.select_proxy(base, requests.utils.get_environ_proxies(base))
    if not proxy:
        return urllib3.PoolManager(**options)
    proxy = requests.utils.prepend_scheme_if_needed(proxy, "http")
    user, password = requests.utils.get_auth_from_url(proxy)
    proxy_headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
    return urllib3.ProxyManager(proxy, proxy_headers=proxy_headers, **options)


@sensitive_variables()  # the bearer token is in the headers, and in every frame below
def call_api(
    *,
    environment: str,
    method: str,
    path: str,
    query: str,
    access_token: str,
    body: bytes | None = None,
) -> ApiAnswer:
    """Send one API call for the proxy to ``environment``'s base URL + ``path`` (already
    checked by the caller: relative, percent-encoded, no dot segments) with the query string
    as given, and return Kroger's status, body and content type as they are: a 401 or 429 is
    an answer here, not an error. Only a timeout or a failed connection raises KrogerError
    (kinds ``timeout`` and ``network``). Never follows redirects."""
    env = Environment.label_of(environment)
    base = _base_url(environment)
    url = f"{base}{path}" + (f"?{query}" if query else "")
    target, expected = urlsplit(url), urlsplit(base)
    if (target.scheme, target.netloc) != (expected.scheme, expected.netloc) or not url.startswith(
        base
    ):
        raise _log(KrogerError("error", "The path leads outside Kroger's API."))
    headers = {
        "Accept": "application/json",
        "Accept-Encoding": "gzip, deflate",
        "Authorization": f"Bearer {access_token}",
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        response = _api_pool(base).request(
            method,
            url,
            body=body,
            headers=headers,
            timeout=settings.KROGER_TIMEOUT_SECONDS,
            retries=False,  # never repeated: cart/add adds quantities
            redirect=False,
        )
    except urllib3.exceptions.HTTPError as exc:
        # A NewConnectionError is a ConnectTimeoutError too: it never left.
        never_sent = _failed_before_sending(exc)
        if isinstance(exc, urllib3.exceptions.TimeoutError) and not never_sent:
            raise _log(
                KrogerError(
                    "timeout",
                    f"Kroger ({env}) did not answer within "
                    f"{settings.KROGER_TIMEOUT_SECONDS} seconds.",
                )
            ) from None
        message = (
            _THROUGH_PROXY.format(env=env)
            if isinstance(exc, urllib3.exceptions.ProxyError)
            else f"Could not reach Kroger ({env}): {type(exc).__name__}."
        )
        raise _log(KrogerError("network", message, sent=not never_sent)) from None
    return ApiAnswer(
        status=response.status,
        body=response.data,
        content_type=response.headers.get("Content-Type", ""),
        retry_after=_retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> int | None:
    """Retry-After in seconds: delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return int(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0, int((moment - datetime.now(UTC)).total_seconds()))
