"""The Kroger API proxy: a service's call, sent on with the connection's token.

A service that only proxies never holds a Kroger token. The portal checks that the path stays
inside the environment's API base URL, counts the call against the client's daily budget (and
the key's quota), sends it with the stored token (``kroger.call_api``), and when Kroger answers
401 to a token the portal believed valid, renews it once under the connection's row lock and
repeats the call once. Nothing else is ever repeated: ``cart/add`` adds quantities, so a
repeated PUT would double them. Only Kroger's status, body and Content-Type travel back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from django.utils import timezone

from connections_app import budgets, kroger, lifecycle
from connections_app.access import get_connection_for_service_key
from connections_app.lifecycle import Actor
from connections_app.models import (
    AccessToken,
    CallCounted,
    Connection,
    ServiceKey,
    TokenUnavailable,
    api_for_path,
)

METHODS = ("GET", "PUT", "POST", "DELETE")
BODY_METHODS = frozenset({"PUT", "POST"})
MAX_BODY_BYTES = 1024 * 1024

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADER_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is allowed in a header
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Characters sent as they are; everything else in a path is percent-encoded.
_PATH_SAFE = "/-._~!$&'()*+,;=:@"


class Refused(Exception):
    """The proxy answers this itself: no call to Kroger is made (or repeated)."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


@dataclass(frozen=True)
class Call:
    method: str
    path: str  # checked and percent-encoded, relative to the base URL
    query: str
    body: bytes | None

    @property
    def api(self) -> str:
        return api_for_path(unquote(self.path))


def _bad_path(message: str) -> Refused:
    return Refused(400, "invalid_path", message)


def checked_path(path: str) -> str:
    """The path as it is sent to Kroger (percent-encoded), if it stays under the base URL.

    ``path`` is what the WSGI server decoded once. Percent-encoded tricks (``%2e%2e``,
    ``%252e``) are caught by checking every decoding of it, up to three, until none changes.
    """
    if not path.strip("/"):
        raise _bad_path("Name a Kroger API path after /kroger/, e.g. products?filter.term=milk.")
    decodings = [path]
    while len(decodings) < 4 and (decoded := unquote(decodings[-1])) != decodings[-1]:
        decodings.append(decoded)
    for candidate in decodings:
        _check(candidate)
    return quote(path, safe=_PATH_SAFE)


def _check(path: str) -> None:
    if _CONTROL.search(path):
        raise _bad_path("The path holds control characters.")
    if "\\" in path:
        raise _bad_path("The path holds a backslash.")
    if path.startswith("/") or _SCHEME.match(path):
        raise _bad_path(
            "Give a path relative to Kroger's API base URL (e.g. products), not an address."
        )
    segments = path.split("/")
    if any(segment in {".", ".."} for segment in segments):
        raise _bad_path("The path may not hold . or .. segments.")
    if "" in segments[:-1]:
        raise _bad_path("The path may not hold empty segments (//).")
    if segments[0].lower() == "connect":
        raise _bad_path(
            "The OAuth endpoints (connect/oauth2/…) are not reachable through the proxy: the "
            "portal itself gets and renews the tokens."
        )


def checked_query(query: str) -> str:
    if _CONTROL.search(unquote(query)) or _CONTROL.search(query):
        raise Refused(400, "invalid_path", "The query string holds control characters.")
    return query


def checked_body(method: str, read: bytes | None) -> bytes | None:
    """The JSON body to send for PUT and POST (None for the other methods or an empty body)."""
    if method not in BODY_METHODS:
        return None
    if read is None:
        return None
    if len(read) > MAX_BODY_BYTES:
        raise body_too_large()
    if not read.strip():
        return None
    try:
        document = json.loads(read)
    except ValueError:
        raise Refused(400, "invalid_body", "The body must be JSON (at most 1 MiB).") from None
    if _holds_control(document):
        raise Refused(
            400,
            "invalid_body",
            "A string in the JSON body holds a control character (such as \\u0000): Kroger's "
            "API takes none. Remove it and send the body again.",
        )
    return read


def _holds_control(value: object) -> bool:
    """Whether a string anywhere in decoded JSON (keys included) holds a control character."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if _CONTROL.search(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def checked_headers(meta: dict[str, object]) -> None:
    """Refuse a request whose headers hold control characters (a tab aside). None of a
    service's headers is forwarded, but such a request is malformed, and is refused before
    anything is read or sent rather than half-understood."""
    for name, value in meta.items():
        if name.startswith("HTTP_") and isinstance(value, str) and _HEADER_CONTROL.search(value):
            header = name[5:].replace("_", "-").title()
            raise Refused(
                400,
                "invalid_header",
                f"The {header} header holds a control character: send it without one.",
            )


def body_too_large() -> Refused:
    return Refused(413, "body_too_large", "The body is larger than 1 MiB: send less at once.")


def forward(key: ServiceKey, code: str, call: Call) -> kroger.ApiAnswer:
    """Make ``call`` to the connection ``code`` with its token, and return Kroger's answer.

    Raises Http404 (the key may not use that connection) or Refused.
    """
    # When the connection (and so its token) was read, in the query that read the key or
    # else just below: a renewal by another caller after that moment is one this request can
    # use instead of renewing again.
    read_at = key.connection_read_at(code) or timezone.now()
    connection = get_connection_for_service_key(key, code)
    actor = Actor(label=f"service key {key.name}")
    try:
        token = lifecycle.get_access_token(connection, actor=actor)
    except TokenUnavailable as exc:
        raise Refused(409, exc.code, exc.reason) from None
    answer = _send(connection, key, call, token, counted=key.call_counted)
    if answer.status != 401:
        return answer
    # Kroger refused a token the portal believed valid: renew it once, under the row lock.
    try:
        renewed = lifecycle.renew(connection, actor=actor, since=read_at)
    except TokenUnavailable as exc:
        raise Refused(409, exc.code, exc.reason) from None
    if renewed.access_token == token.access_token:
        return answer  # nothing newer to try: Kroger's 401 stands
    return _send(connection, key, call, renewed)


def take_back(key: ServiceKey) -> None:
    """Refund the call counted with the key's read (``ServiceKey.authenticate_for``) when the
    proxy refuses it before sending it: Kroger never saw it."""
    counted, key.call_counted = key.call_counted, None
    if counted is not None:
        budgets.refund(counted.budget.client, counted.api, key, counted.at)


def _send(
    connection: Connection,
    key: ServiceKey,
    call: Call,
    token: AccessToken,
    counted: CallCounted | None = None,
) -> kroger.ApiAnswer:
    client, api = connection.client, call.api
    if counted is not None and counted.api == api:
        key.call_counted = None  # it goes out now: counted once, whatever happens next
        budgets.after_counted(counted, key)
        counted_at = counted.at
    else:
        take_back(key)
        counted_at = timezone.now()
        refusal = budgets.spend(client, api, key, counted_at)
        if refusal is not None:
            raise Refused(429, refusal.code, refusal.message, retry_after=refusal.retry_after)
    try:
        answer = kroger.call_api(
            environment=connection.environment,
            method=call.method,
            path=call.path,
            query=call.query,
            access_token=token.access_token,
            body=call.body,
        )
    except kroger.KrogerError as exc:
        if exc.kind == "timeout":  # it may have reached Kroger: it stays counted
            raise Refused(504, "kroger_timeout", exc.message) from None
        if not exc.sent:
            budgets.refund(client, api, key, counted_at)  # it never left: Kroger did not count it
        raise Refused(502, "kroger_unreachable", exc.message) from None
    if answer.status == 429:
        wait = budgets.kroger_said_spent(client, api, answer.retry_after)
        return kroger.ApiAnswer(429, answer.body, answer.content_type, retry_after=wait)
    return answer
