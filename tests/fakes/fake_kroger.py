"""A fake Kroger served over real https on 127.0.0.1 (certificates of the throwaway CA in
``tls.py``), so the portal's own client code and TLS verification run.

It behaves as ``shared/KROGER.md`` describes Kroger: a consent page with Accept and Decline,
single-use authorization codes bound to their redirect URI and PKCE challenge, HTTP Basic
client authentication at the token endpoint, rotating refresh tokens, client credentials that
refuse shopper scopes, and the Profile, Locations (with chains and departments), Products and
Cart (``PUT cart/add``) endpoints behind a bearer token. Tests steer it with ``fail_token``,
``reply_token``, ``craft_token_answers``, ``fail_api``, ``token_delay``, ``token_gate``,
``api_delay``, ``api_headers`` and ``expires_in`` and read ``token_calls`` / ``api_calls`` /
``api_requests`` / ``cart``. Its only cookie is named so it cannot collide with the portal's.

It is also the stand-in that ``make demo`` (bin/demo) serves to a browser, so it needs nothing
of pytest: the standard library, requests and ``tls.py`` (trustme) only.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import json
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import requests

from tests.fakes.tls import TLSServerMixin

USER_ONLY_SCOPES = frozenset({"cart.basic:write", "profile.compact"})
API_ROOTS = frozenset({"identity", "locations", "chains", "departments", "products", "cart"})
COOKIE_NAME = "fake_kroger_consent"
TOKEN_FAILURES = frozenset(
    {
        "500",
        "timeout",
        "garbage",
        "invalid_grant",
        "invalid_client",
        "invalid_scope",
        "redirect_uri",
        # RFC 6749 "not now" answers, sent with HTTP 400 like the refusals above.
        "temporarily_unavailable",
        "server_error",
    }
)


class _QuietServer(TLSServerMixin, ThreadingHTTPServer):
    """A client that gave up (a timeout test) is expected; its broken pipe is not news."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)


@dataclass
class _Client:
    secret: str
    scopes: set[str]


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    scopes: list[str]
    code_challenge: str
    code_challenge_method: str
    used: bool = False


@dataclass
class _Token:
    client_id: str
    scopes: list[str]
    shopper: bool
    expires_at: float = 0.0
    valid: bool = True


@dataclass
class FakeKroger:
    """The fake's state; every access goes through ``lock`` (handlers run in many threads)."""

    expires_in: int = 1800
    token_delay: float = 0.0
    # While set to an Event, token requests are held until it is set: a Kroger as slow as a
    # test needs (give the portal a timeout to match).
    token_gate: threading.Event | None = None
    timeout_sleep: float = 3.0
    url: str = ""
    token_calls: list[dict[str, Any]] = field(default_factory=list)
    api_calls: list[str] = field(default_factory=list)
    api_requests: list[dict[str, Any]] = field(default_factory=list)  # method, path, headers…
    api_delay: float = 0.0
    api_headers: dict[str, str] = field(default_factory=dict)  # added to every API answer
    cart: list[dict[str, Any]] = field(default_factory=list)  # items added, in order
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)  # every code and token ever handed out
    lock: threading.RLock = field(default_factory=threading.RLock)
    clients: dict[str, _Client] = field(default_factory=dict)
    codes: dict[str, _Code] = field(default_factory=dict)
    access_tokens: dict[str, _Token] = field(default_factory=dict)
    refresh_tokens: dict[str, _Token] = field(default_factory=dict)
    token_failures: list[str] = field(default_factory=list)
    token_crafts: list[Callable[[dict[str, Any]], Any]] = field(default_factory=list)
    api_failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    token_replies: list[tuple[int, str, dict[str, str]]] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    # --- Lifecycle ---------------------------------------------------------------------

    def start(self, port: int = 0) -> FakeKroger:
        """Serve on 127.0.0.1:``port`` (any free port by default)."""
        fake = self

        class Handler(_Handler):
            kroger = fake

        server = _QuietServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        server.block_on_close = False
        self._server = server
        self.url = f"https://127.0.0.1:{server.server_address[1]}/v1/"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- Controls ----------------------------------------------------------------------

    def register_client(self, client_id: str, client_secret: str, scopes: Iterable[str]) -> None:
        with self.lock:
            self.clients[client_id] = _Client(client_secret, set(scopes))

    def issue_tokens(self, client_id: str, scopes: Iterable[str]) -> tuple[str, str]:
        """Seed a shopper grant as if consent had happened: (access token, refresh token)."""
        with self.lock:
            return self._issue(client_id, list(scopes), shopper=True)

    def fail_token(self, kind: str, times: int = 1) -> None:
        if kind not in TOKEN_FAILURES:
            raise ValueError(f"unknown token failure {kind!r}")
        with self.lock:
            self.token_failures.extend([kind] * times)

    def reply_token(self, status: int, body: Any, *, headers: dict[str, str] | None = None) -> None:
        """Answer the next token request with exactly this: ``body`` is sent as JSON unless it
        is a string, which is sent as it is."""
        text = body if isinstance(body, str) else json.dumps(body)
        with self.lock:
            self.token_replies.append((status, text, headers or {}))

    def craft_token_answers(self, craft: Callable[[dict[str, Any]], Any], times: int = 1) -> None:
        """The next ``times`` successful token answers: ``craft`` gets the answer the fake
        would send (a copy) and returns the JSON value sent instead, for answers no real
        Kroger sends. The fake rotates the refresh token only when the crafted answer still
        carries the new one intact: otherwise it is as if Kroger had not rotated, and the
        previous refresh token stays valid."""
        with self.lock:
            self.token_crafts.extend([craft] * times)

    def fail_api(self, status: int, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self.lock:
            self.api_failures.extend([(status, dict(headers or {}))] * times)

    def expire_access_tokens(self) -> None:
        with self.lock:
            for token in self.access_tokens.values():
                token.expires_at = 0.0

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            for token in self.refresh_tokens.values():
                token.valid = False

    def consent(self, authorize_url: str, *, accept: bool = True) -> str:
        """Do what a shopper's browser does on the consent page; return where it is sent back."""
        page = requests.get(authorize_url, allow_redirects=False, timeout=5)
        if page.status_code == 302:  # refused before the shopper saw anything
            return str(page.headers["Location"])
        assert page.status_code == 200, page.text
        query = {key: values[0] for key, values in parse_qs(urlsplit(authorize_url).query).items()}
        answer = requests.post(
            f"{self.url}connect/oauth2/authorize",
            data={**query, "decision": "accept" if accept else "decline"},
            allow_redirects=False,
            timeout=5,
        )
        assert answer.status_code == 302, answer.text
        return str(answer.headers["Location"])

    def token_calls_for(self, grant_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [call for call in self.token_calls if call.get("grant_type") == grant_type]

    # --- Internals (called with the lock held) -----------------------------------------

    def _new(self, prefix: str) -> str:
        value = f"{prefix}-{secrets.token_urlsafe(24)}"
        self.issued.append(value)
        return value

    def _issue(self, client_id: str, scopes: list[str], *, shopper: bool) -> tuple[str, str]:
        access = self._new("fk-access")
        self.access_tokens[access] = _Token(
            client_id, scopes, shopper, expires_at=time.time() + self.expires_in
        )
        if not shopper:
            return access, ""
        refresh = self._new("fk-refresh")
        self.refresh_tokens[refresh] = _Token(client_id, scopes, shopper)
        return access, refresh


class _Handler(BaseHTTPRequestHandler):
    kroger: FakeKroger
    protocol_version = "HTTP/1.1"
    # The headers and the body leave in two writes: with Nagle's algorithm the body would wait
    # for the client's delayed ACK of the headers (40 ms on Linux), far longer than the answer.
    disable_nagle_algorithm = True
    _craft: Callable[[dict[str, Any]], Any] | None = None
    _spent_refresh = ""

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet

    # --- Plumbing ----------------------------------------------------------------------

    def _path(self) -> tuple[str, dict[str, str]]:
        parts = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        path = parts.path
        return (path[len("/v1/") :] if path.startswith("/v1/") else path.lstrip("/")), query

    def _form(self) -> dict[str, str]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length).decode("utf-8")
        return {key: values[0] for key, values in parse_qs(raw, keep_blank_values=True).items()}

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        craft, self._craft = getattr(self, "_craft", None), None
        if craft is not None and status == 200:
            self._send(200, json.dumps(self._crafted(craft, payload)).encode(), "application/json")
            return
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _crafted(self, craft: Callable[[dict[str, Any]], Any], payload: dict[str, Any]) -> Any:
        """See ``FakeKroger.craft_token_answers`` (called with the fake's lock held)."""
        fake = self.kroger
        crafted = craft(copy.deepcopy(payload))
        issued = payload.get("refresh_token")
        delivered = isinstance(crafted, dict) and crafted.get("refresh_token") == issued
        if issued and not delivered:
            fake.refresh_tokens.pop(issued, None)
            spent = fake.refresh_tokens.get(self._spent_refresh)
            if spent is not None:
                spent.valid = True
        return crafted

    def _redirect(self, location: str) -> None:
        self._send(302, b"", "text/plain", {"Location": location})

    def _html(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, text.encode(), "text/html; charset=utf-8", headers)

    # --- Routing -----------------------------------------------------------------------

    def do_GET(self) -> None:
        path, query = self._path()
        if path == "connect/oauth2/authorize":
            self._consent_page(query)
        elif path == "":
            self._html(200, _page("Local Kroger stand-in", _WELCOME))
        elif path.split("/")[0] in API_ROOTS:
            self._api(path, query)
        else:
            self._json(404, {"errors": {"code": "NotFound", "reason": "no such endpoint"}})

    def do_POST(self) -> None:
        path, query = self._path()
        if path == "connect/oauth2/authorize":
            self._consent_decision(self._form())
        elif path == "connect/oauth2/token":
            self._token(self._form())
        elif path.split("/")[0] in API_ROOTS:
            self._api(path, query)
        else:
            self._json(404, {"errors": {"code": "NotFound", "reason": "no such endpoint"}})

    def do_PUT(self) -> None:
        path, query = self._path()
        self._api(path, query)

    def do_DELETE(self) -> None:
        path, query = self._path()
        self._api(path, query)

    # --- Consent -----------------------------------------------------------------------

    def _consent_page(self, query: dict[str, str]) -> None:
        fake = self.kroger
        with fake.lock:
            fake.authorize_requests.append(dict(query))
            client = fake.clients.get(query.get("client_id", ""))
        redirect_uri = query.get("redirect_uri", "")
        if client is None or not redirect_uri.startswith(("http://", "https://")):
            self._html(400, "<h1>Invalid client or redirect URI</h1>")
            return
        if query.get("response_type") != "code":
            self._back(redirect_uri, query, error="unsupported_response_type")
            return
        scopes = query.get("scope", "").split()
        unknown = [scope for scope in scopes if scope not in client.scopes]
        if unknown:
            self._back(
                redirect_uri,
                query,
                error="invalid_scope",
                description=f"The app may not request {', '.join(unknown)}",
            )
            return
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(name)}" value="{html.escape(value)}">'
            for name, value in query.items()
        )
        banner = html.escape(query.get("banner") or "kroger")
        page = f"""<!doctype html>
<html><head><title>Kroger stand-in: sign in to {banner}</title></head><body>
{_NOT_KROGER}
<h1>Allow access to your {banner} account?</h1>
<p>The app asks for: {html.escape(" ".join(scopes))}</p>
<form method="post" action="/v1/connect/oauth2/authorize">{hidden}
<button type="submit" name="decision" value="accept">Accept</button>
<button type="submit" name="decision" value="decline">Decline</button>
</form></body></html>"""
        self._html(200, page, {"Set-Cookie": f"{COOKIE_NAME}=1; Path=/; HttpOnly; SameSite=Lax"})

    def _consent_decision(self, form: dict[str, str]) -> None:
        fake = self.kroger
        redirect_uri = form.get("redirect_uri", "")
        if form.get("decision") != "accept":
            self._back(
                redirect_uri,
                form,
                error="access_denied",
                description="The user denied the authorization request",
            )
            return
        with fake.lock:
            code = fake._new("fk-code")
            fake.codes[code] = _Code(
                client_id=form.get("client_id", ""),
                redirect_uri=redirect_uri,
                scopes=form.get("scope", "").split(),
                code_challenge=form.get("code_challenge", ""),
                code_challenge_method=form.get("code_challenge_method", ""),
            )
        params = {"code": code}
        if "state" in form:
            params["state"] = form["state"]
        self._redirect(_with_query(redirect_uri, params))

    def _back(
        self, redirect_uri: str, request: dict[str, str], *, error: str, description: str = ""
    ) -> None:
        params = {"error": error}
        if description:
            params["error_description"] = description
        if "state" in request:
            params["state"] = request["state"]
        self._redirect(_with_query(redirect_uri, params))

    # --- Token endpoint ----------------------------------------------------------------

    def _basic_auth(self) -> tuple[str, str] | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            decoded = base64.b64decode(header[len("Basic ") :]).decode("utf-8")
        except ValueError:
            return None
        client_id, sep, secret = decoded.partition(":")
        return (client_id, secret) if sep else None

    def _token(self, form: dict[str, str]) -> None:
        fake = self.kroger
        credentials = self._basic_auth()
        with fake.lock:
            fake.token_calls.append(
                {
                    **form,
                    "client_id": credentials[0] if credentials else form.get("client_id", ""),
                    "basic_auth": credentials is not None,
                }
            )
            failure = fake.token_failures.pop(0) if fake.token_failures else None
            reply = fake.token_replies.pop(0) if fake.token_replies else None
            delay = fake.token_delay
            gate = fake.token_gate
            crafts = fake.token_crafts if failure is None and reply is None else []
            self._craft = crafts.pop(0) if crafts else None
            self._spent_refresh = ""
        if delay:
            time.sleep(delay)
        if gate is not None:
            gate.wait(timeout=60)
        if reply is not None:
            status, text, headers = reply
            self._send(status, text.encode(), "application/json", headers)
            return
        if failure is not None:
            self._token_failure(failure)
            return
        with fake.lock:
            client = fake.clients.get(credentials[0]) if credentials else None
            if credentials is None or client is None or client.secret != credentials[1]:
                self._json(
                    401,
                    {
                        "error": "invalid_client",
                        "error_description": "Client authentication failed",
                    },
                )
                return
            client_id = credentials[0]
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                self._grant_code(client_id, form)
            elif grant_type == "refresh_token":
                self._grant_refresh(client_id, form)
            elif grant_type == "client_credentials":
                self._grant_client_credentials(client_id, client, form)
            else:
                self._json(400, {"error": "unsupported_grant_type"})

    def _token_failure(self, kind: str) -> None:
        if kind == "500":
            self._html(500, "<h1>Internal Server Error</h1>")
        elif kind == "timeout":
            time.sleep(self.kroger.timeout_sleep)
            self._json(503, {"error": "too late"})
        elif kind == "garbage":
            self._html(200, "<html><body>Please enable JavaScript</body></html>")
        elif kind == "invalid_client":
            self._json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        elif kind == "redirect_uri":
            self._json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The redirect_uri did not match the registered value",
                },
            )
        else:
            self._json(400, {"error": kind, "error_description": f"Injected {kind}"})

    def _grant_code(self, client_id: str, form: dict[str, str]) -> None:
        fake = self.kroger
        code = fake.codes.get(form.get("code", ""))
        if code is None or code.used or code.client_id != client_id:
            self._json(400, {"error": "invalid_grant", "error_description": "Invalid code"})
            return
        code.used = True
        if form.get("redirect_uri") != code.redirect_uri:
            self._json(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "The redirect_uri did not match the one authorized",
                },
            )
            return
        if code.code_challenge:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if code.code_challenge_method != "S256" or expected != code.code_challenge:
                self._json(
                    400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
                )
                return
        access, refresh = fake._issue(client_id, code.scopes, shopper=True)
        self._json(200, _token_body(access, fake.expires_in, refresh, code.scopes))

    def _grant_refresh(self, client_id: str, form: dict[str, str]) -> None:
        fake = self.kroger
        old = fake.refresh_tokens.get(form.get("refresh_token", ""))
        if old is None or not old.valid or old.client_id != client_id:
            self._json(
                400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
            )
            return
        old.valid = False  # rotation: the one just used is dead
        self._spent_refresh = form.get("refresh_token", "")
        access, refresh = fake._issue(client_id, old.scopes, shopper=True)
        self._json(200, _token_body(access, fake.expires_in, refresh, old.scopes))

    def _grant_client_credentials(
        self, client_id: str, client: _Client, form: dict[str, str]
    ) -> None:
        fake = self.kroger
        scopes = form.get("scope", "").split()
        refused = [s for s in scopes if s in USER_ONLY_SCOPES or s not in client.scopes]
        if refused:
            self._json(
                400,
                {
                    "error": "invalid_scope",
                    "error_description": f"Scope not allowed: {' '.join(refused)}",
                },
            )
            return
        access, _ = fake._issue(client_id, scopes, shopper=False)
        self._json(200, _token_body(access, fake.expires_in, None, scopes))

    # --- API ---------------------------------------------------------------------------

    def _api(self, path: str, query: dict[str, str]) -> None:
        fake = self.kroger
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        with fake.lock:
            fake.api_calls.append(path)
            fake.api_requests.append(
                {
                    "method": self.command,
                    "path": path,
                    "raw_path": self.path,
                    "query": query,
                    "headers": dict(self.headers.items()),
                    "body": raw_body,
                }
            )
            failure = fake.api_failures.pop(0) if fake.api_failures else None
            header = self.headers.get("Authorization", "")
            token = fake.access_tokens.get(header[len("Bearer ") :]) if header else None
            delay = fake.api_delay
        if delay:
            time.sleep(delay)
        if failure is not None:
            status, headers = failure
            body = {"errors": {"code": str(status), "reason": "Injected failure"}}
            self._api_json(status, body, headers)
            return
        if not header.startswith("Bearer "):
            self._api_json(401, {"error": "invalid_request", "error_description": "Missing token"})
            return
        if token is None or not token.valid or token.expires_at < time.time():
            self._api_json(
                401,
                {
                    "error": "invalid_token",
                    "error_description": "The access token is invalid or has expired",
                },
            )
            return
        root = path.split("/")[0]
        needed = {
            "identity": "profile.compact",
            "products": "product.compact",
            "cart": "cart.basic:write",
        }.get(root)
        if (needed and needed not in token.scopes) or (
            root in {"identity", "cart"} and not token.shopper
        ):
            self._api_json(
                403, {"errors": {"code": "Forbidden", "reason": "missing required scopes"}}
            )
            return
        self._api_answer(self.command, path, query, raw_body)

    def _api_answer(self, method: str, path: str, query: dict[str, str], body: bytes) -> None:
        fake = self.kroger
        if method == "PUT" and path == "cart/add":
            try:
                items = json.loads(body or b"{}").get("items")
            except (ValueError, AttributeError):
                items = None
            if not isinstance(items, list):
                self._api_json(400, {"errors": {"code": "BadRequest", "reason": "items"}})
                return
            with fake.lock:
                fake.cart.extend(items)
            self._send(204, b"", "application/json", fake.api_headers)
            return
        if method != "GET":
            self._api_json(405, {"errors": {"code": "MethodNotAllowed", "reason": method}})
            return
        if path == "identity/profile":
            self._api_json(200, {"data": {"id": "9f3c1e52-profile"}, "meta": {}})
        elif path in {"locations", "chains", "departments"} or path.startswith(
            ("locations/", "chains/", "departments/")
        ):
            zip_code = query.get("filter.zipCode.near", "")
            self._api_json(
                200,
                {
                    "data": [{"locationId": "01400943", "chain": "KROGER", "zipCode": zip_code}],
                    "meta": {"pagination": {"start": 0, "limit": 10, "total": 1}},
                },
            )
        elif path == "products" or path.startswith("products/"):
            self._api_json(
                200,
                {
                    "data": [
                        {"productId": "0001111041700", "description": query.get("filter.term")}
                    ],
                    "meta": {},
                },
            )
        else:
            self._api_json(404, {"errors": {"code": "NotFound", "reason": "no such endpoint"}})

    def _api_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        extra = {**self.kroger.api_headers, **(headers or {})}
        self._send(status, json.dumps(payload).encode(), "application/json", extra)


def _token_body(
    access: str, expires_in: int, refresh: str | None, scopes: list[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": expires_in,
        "scope": " ".join(scopes),
    }
    if refresh:
        body["refresh_token"] = refresh
    return body


# Whoever sees the stand-in's pages in a browser (``make demo``) must not take them for Kroger's.
_NOT_KROGER = (
    '<p role="note"><strong>Local Kroger stand-in, not Kroger.</strong> This page comes from '
    "the fake Kroger of the portal's tests, running on this machine: no Kroger account is "
    "involved and nothing you do here reaches Kroger.</p>"
)
_WELCOME = (
    f"{_NOT_KROGER}<h1>Local Kroger stand-in</h1><p>It serves https with a certificate from a "
    "certificate authority made for this run only. If your browser asked, you have now "
    "accepted it: close this tab and go back to the portal.</p>"
)


def _page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body>{body}</body></html>"
    )


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"
