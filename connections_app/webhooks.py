"""Webhooks: tell the team's systems what happened, signed, in order, nothing lost.

``emit()`` writes an event to the outbox (``WebhookDelivery``) in the caller's transaction:
a change that rolls back sends nothing, and one that commits is sent even if the process
dies straight after. The worker delivers (``deliver_due()``, once per pass): one endpoint at a
time per worker (a lease on the endpoint's row), its deliveries oldest first, each retried
with exponential backoff for a day and then marked failed. Deliveries follow the Standard
Webhooks specification (``webhook-id``, ``webhook-timestamp``, ``webhook-signature``).

A crash between sending and recording a delivery sends it again, with the same
``webhook-id``: receivers deduplicate on it. Every request goes to the address that was
checked (``safe_post``): never to loopback, private, link-local or other non-public addresses
unless ``WEBHOOK_ALLOW_PRIVATE`` is on, and no redirect is followed.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import certifi
import urllib3
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from connections_app.models import (
    ApiBudget,
    Connection,
    DeliveryState,
    Notice,
    Outcome,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
    WebhookFormat,
)

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10
RETRY_FOR = timedelta(hours=24)  # a delivery is retried this long after its first attempt
DISABLE_AFTER = timedelta(hours=24)  # an endpoint failing this long is disabled
LEASE = timedelta(minutes=2)  # a worker that dies mid-delivery holds an endpoint this long
ENDPOINTS_PER_PASS = 200
USER_AGENT = "KrogerConnectionsPortal-Webhooks/1"


def retry_backoff(attempts: int) -> timedelta:
    """How long to wait after ``attempts`` failed attempts: 10 s, 20 s, 40 s … up to an hour."""
    return min(timedelta(seconds=10) * 2 ** max(attempts - 1, 0), timedelta(hours=1))


# --- Writing events ---------------------------------------------------------------------------


def emit(event: str, data: dict[str, Any], *, endpoint: WebhookEndpoint | None = None) -> int:
    """Queue ``event`` for every enabled endpoint that wants it (or for ``endpoint`` alone),
    in the caller's transaction. Returns how many deliveries were queued. ``data`` must hold
    no token or secret: it is sent as it is."""
    assert event in WebhookEvent.values, event
    now = timezone.now()
    if endpoint is not None:
        targets = [endpoint]
    else:
        enabled = WebhookEndpoint.objects.filter(enabled=True).only("pk", "events")
        targets = [candidate for candidate in enabled if candidate.wants(event)]
    if not targets:
        return 0
    body = json.dumps(
        {"type": event, "timestamp": now.isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )
    with transaction.atomic():
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(endpoint=target, event=event, payload=body, created_at=now)
            for target in targets
        )
    return len(targets)


def connection_data(connection: Connection) -> dict[str, Any]:
    """What an event says about a connection: who it is and how it is, never a token."""
    return {
        "id": str(connection.code),
        "name": connection.name,
        "environment": connection.environment,
        "status": connection.status,
        "status_reason": connection.status_reason,
        "url": settings.SITE_URL + reverse("connection_detail", kwargs={"code": connection.code}),
    }


def emit_connection_event(event: str, connection: Connection, *, reason: str = "") -> int:
    data: dict[str, Any] = {"connection": connection_data(connection)}
    if reason:
        data["reason"] = reason
    return emit(event, data)


def announce(connection: Connection, outcome: Outcome) -> None:
    """The events a token change reports, written in its transaction: what
    ``notifications.announce`` tells people by e-mail once the change is committed."""
    if outcome.notice is Notice.FAILURE:
        event = (
            WebhookEvent.CONNECTION_NEEDS_REAUTHORIZATION
            if connection.needs_reauthorization
            else WebhookEvent.CONNECTION_OFFLINE
        )
        _queue(event, connection, reason=outcome.notice_detail)
    elif outcome.notice is Notice.RECOVERY:
        _queue(WebhookEvent.CONNECTION_RECOVERED, connection)


def announce_authorized(connection: Connection, *, recovered: bool) -> None:
    """A new consent (or client-credentials token) was stored, in this transaction."""
    _queue(WebhookEvent.CONNECTION_AUTHORIZED, connection)
    if recovered:
        _queue(WebhookEvent.CONNECTION_RECOVERED, connection)


def announce_budget(event: str, budget: ApiBudget, *, reason: str) -> None:
    """A daily budget reached 80% (``budget.warning``) or was spent (``budget.exhausted``),
    written in the transaction that counted the call. ``reason``: limit or kroger."""
    now = timezone.now()
    resets = budget.exhausted_until(now) or budget.window_ends_at(now)
    data = {
        "budget": {
            "client": budget.client.name,
            "client_id": str(budget.client.code),
            "api": budget.api,
            "used": budget.calls_in_window(now),
            "limit": budget.daily_limit,
            "reason": reason,
            "resets_at": resets.isoformat().replace("+00:00", "Z") if resets else None,
        }
    }
    _guarded(event, f"client {budget.client.code}", lambda: emit(event, data))


def _queue(event: str, connection: Connection, *, reason: str = "") -> None:
    _guarded(
        event,
        f"connection {connection.code}",
        lambda: emit_connection_event(event, connection, reason=reason),
    )


def _guarded(event: str, about: str, write: Callable[[], object]) -> None:
    # A savepoint: should the outbox write fail, the change around it (a rotated refresh
    # token, for which Kroger has already invalidated the old one; a counted call) must still
    # be committed.
    try:
        with transaction.atomic():
            write()
    except DatabaseError as exc:
        logger.error("Could not queue %s for %s: %s", event, about, type(exc).__name__)


def send_test_event(endpoint: WebhookEndpoint, *, actor: Any = None) -> WebhookDelivery:
    """Queue a ``webhook.test`` for this endpoint alone and try to deliver it right away."""
    who = getattr(actor, "email", "") or getattr(actor, "username", "") or "the portal"
    with transaction.atomic():
        emit(
            WebhookEvent.WEBHOOK_TEST,
            {
                "message": f"Test event sent by {who} from the Webhooks page.",
                "endpoint": {"id": str(endpoint.code), "url": endpoint.url},
            },
            endpoint=endpoint,
        )
    deliver_to(endpoint.pk)
    return endpoint.deliveries.filter(event=WebhookEvent.WEBHOOK_TEST).order_by("-pk").first()  # type: ignore[return-value]


# --- Delivering -------------------------------------------------------------------------------


class DeliveryRefused(Exception):
    """The request was not sent: the URL or the address it resolves to is not allowed."""


class DeliveryFailed(Exception):
    """The request was sent (or tried) and got no HTTP answer: network, TLS, timeout."""


@dataclass(frozen=True)
class Answer:
    status: int
    duration_ms: int


def deliver_due(*, now: datetime | None = None, stop: threading.Event | None = None) -> int:
    """One pass: for every enabled endpoint with a delivery due, send its deliveries in order.
    Returns how many were delivered. ``now`` moves this pass's clock (for tests)."""
    offset = (now or timezone.now()) - timezone.now()

    def clock() -> datetime:
        return timezone.now() + offset

    prune(now=clock())
    due = (
        WebhookDelivery.objects.filter(
            state=DeliveryState.PENDING, next_attempt_at__lte=clock(), endpoint__enabled=True
        )
        .order_by("endpoint_id")
        .values_list("endpoint_id", flat=True)
        .distinct()
    )
    delivered = 0
    for pk in list(due[:ENDPOINTS_PER_PASS]):
        if stop is not None and stop.is_set():
            break
        delivered += deliver_to(pk, clock=clock, stop=stop)
    return delivered


def deliver_to(
    pk: int,
    *,
    clock: Callable[[], datetime] = timezone.now,
    stop: threading.Event | None = None,
) -> int:
    """Send this endpoint's due deliveries, oldest first, stopping at the first failure (so
    that order is kept). Skipped when another worker holds the endpoint's lease."""
    free = Q(lease_until__isnull=True) | Q(lease_until__lte=clock())
    claim = WebhookEndpoint.objects.filter(Q(pk=pk, enabled=True) & free)
    if not claim.update(lease_until=clock() + LEASE):
        return 0
    delivered = 0
    try:
        while stop is None or not stop.is_set():
            endpoint = WebhookEndpoint.objects.filter(pk=pk, enabled=True).first()
            if endpoint is None:
                break
            head = endpoint.deliveries.filter(state=DeliveryState.PENDING).order_by("pk").first()
            if head is None or head.next_attempt_at > clock():
                break
            WebhookEndpoint.objects.filter(pk=pk).update(lease_until=clock() + LEASE)
            if not _attempt(endpoint, head, clock=clock):
                break
            delivered += 1
    finally:
        WebhookEndpoint.objects.filter(pk=pk).update(lease_until=None)
    return delivered


def _attempt(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, *, clock: Callable[[], datetime]
) -> bool:
    body, headers = signed_request(endpoint, delivery)
    status: int | None = None
    error = ""
    started = time.monotonic()
    try:
        answer = safe_post(endpoint.url, body, headers)
        status = answer.status
        if not 200 <= status < 300:
            error = f"HTTP {status}" + (
                " (redirects are not followed)" if 300 <= status < 400 else ""
            )
    except (DeliveryRefused, DeliveryFailed) as exc:
        error = str(exc)[:255]
    duration_ms = int((time.monotonic() - started) * 1000)
    now = clock()
    ok = not error
    disabled = False
    with transaction.atomic():
        delivery.attempts += 1
        delivery.first_attempt_at = delivery.first_attempt_at or now
        delivery.last_status_code = status
        delivery.last_error = error
        WebhookAttempt.objects.create(
            endpoint=endpoint,
            delivery=delivery,
            at=now,
            event=delivery.event,
            attempt=delivery.attempts,
            status_code=status,
            duration_ms=duration_ms,
            error=error,
        )
        if ok:
            delivery.state = DeliveryState.DELIVERED
            delivery.finished_at = now
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=None)
        else:
            if now - delivery.first_attempt_at >= RETRY_FOR:
                delivery.state = DeliveryState.FAILED
                delivery.finished_at = now
            else:
                delivery.next_attempt_at = now + retry_backoff(delivery.attempts)
            failing_since = endpoint.failing_since or now
            WebhookEndpoint.objects.filter(pk=endpoint.pk).update(failing_since=failing_since)
            if now - failing_since >= DISABLE_AFTER:
                disable(endpoint, "Disabled after 24 hours of failed deliveries.", now=now)
                disabled = True
        delivery.save()
    logger.info(
        "Webhook %s to endpoint %s, attempt %s: %s",
        delivery.event,
        endpoint.code,
        delivery.attempts,
        "delivered" if ok else error,
    )
    if disabled:
        _tell_owner_of_disabling(endpoint, error)
    return ok


def disable(endpoint: WebhookEndpoint, reason: str, *, now: datetime | None = None) -> None:
    """Stop delivering to the endpoint; what was still queued for it is marked failed."""
    now = now or timezone.now()
    with transaction.atomic():
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            enabled=False, disabled_reason=reason[:255], updated_at=now
        )
        endpoint.deliveries.filter(state=DeliveryState.PENDING).update(
            state=DeliveryState.FAILED, finished_at=now, last_error=f"Not sent: {reason}"[:255]
        )
    endpoint.enabled, endpoint.disabled_reason = False, reason[:255]


def signed_request(
    endpoint: WebhookEndpoint, delivery: WebhookDelivery, *, at: datetime | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one attempt, signed with every secret that signs now."""
    if endpoint.format == WebhookFormat.SLACK:
        text = json.dumps({"text": slack_text(json.loads(delivery.payload))}, ensure_ascii=False)
    else:
        text = delivery.payload
    at = at or datetime.now(tz=UTC)
    signatures = [
        Webhook(secret).sign(msg_id=delivery.webhook_id, timestamp=at, data=text)
        for secret in endpoint.signing_secrets()
    ]
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
    return text.encode("utf-8"), headers


def slack_text(message: dict[str, Any]) -> str:
    """One line a person reads in a Slack channel, with a link to the connection."""
    event, data = message.get("type", ""), message.get("data") or {}
    connection = data.get("connection") or {}
    name, url = connection.get("name", ""), connection.get("url", "")
    reason = data.get("reason") or connection.get("status_reason") or ""
    lines = {
        WebhookEvent.CONNECTION_AUTHORIZED: f"Kroger connection “{name}” was authorized.",
        WebhookEvent.CONNECTION_OFFLINE: f"Kroger connection “{name}” is offline: {reason}",
        WebhookEvent.CONNECTION_RECOVERED: f"Kroger connection “{name}” works again.",
        WebhookEvent.CONNECTION_NEEDS_REAUTHORIZATION: (
            f"Kroger connection “{name}” needs to be authorized again: {reason}"
        ),
        WebhookEvent.CONNECTION_DELETED: f"Kroger connection “{name}” was deleted.",
    }
    if event in lines:
        text = lines[event].rstrip(": ")
        return f"{text} <{url}|Open>" if url and event != WebhookEvent.CONNECTION_DELETED else text
    if event in (WebhookEvent.BUDGET_WARNING, WebhookEvent.BUDGET_EXHAUSTED):
        budget = data.get("budget") or {}
        used, limit = budget.get("used"), budget.get("limit")
        what = "is spent" if event == WebhookEvent.BUDGET_EXHAUSTED else "is 80% spent"
        if budget.get("reason") == "kroger":
            what = "is spent: Kroger answered 429 (the app is also used outside the portal)"
        of = f" ({used:,} of {limit:,} calls)" if used is not None and limit else ""
        return (
            f"The Kroger {budget.get('api', '')} daily budget of the OAuth 2.0 client "
            f"“{budget.get('client', '')}” {what}{of}."
        )
    return str(data.get("message") or event)


# --- The SSRF guard ----------------------------------------------------------------------------


def address_refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """Why a delivery may not go to this address ("" when it may): only public addresses,
    unless WEBHOOK_ALLOW_PRIVATE is on."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    classes = [
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (such as the cloud metadata service)"),
        ("is_multicast", "a multicast address"),
        ("is_reserved", "a reserved address"),
        ("is_private", "a private address"),
    ]
    for attribute, label in classes:
        if getattr(address, attribute):
            return label
    return "" if address.is_global else "not a public address"


def resolve(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise DeliveryFailed(f"Cannot resolve {host}: {exc}") from None
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def checked_addresses(url: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The addresses ``url`` may be delivered to; DeliveryRefused if any is not allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeliveryRefused("Only http:// and https:// URLs receive webhooks.")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    addresses = resolve(parts.hostname, port)
    if not addresses:
        raise DeliveryFailed(f"{parts.hostname} has no address.")
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return addresses
    for address in addresses:
        if why := address_refusal(address):
            raise DeliveryRefused(
                f"Not sent: {parts.hostname} resolves to {address}, {why}. Set "
                "WEBHOOK_ALLOW_PRIVATE=true to deliver inside your own network."
            )
    return addresses


def ca_bundle() -> str:
    """The CAs ``requests`` would trust: REQUESTS_CA_BUNDLE, else certifi's."""
    return (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )


def safe_post(url: str, body: bytes, headers: dict[str, str]) -> Answer:
    """POST to ``url`` at an address checked by ``checked_addresses``, connecting to that very
    address (so DNS cannot answer differently between the check and the connection); TLS is
    still verified against the URL's host name. No redirect is followed, no proxy used."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    timeout = urllib3.Timeout(connect=TIMEOUT_SECONDS, read=TIMEOUT_SECONDS)
    last_error = ""
    started = time.monotonic()
    for address in checked_addresses(url):
        pool: urllib3.HTTPConnectionPool
        if parts.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                str(address),
                port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                ca_certs=ca_bundle(),
                server_hostname=host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(
                str(address), port, timeout=timeout, retries=False, maxsize=1
            )
        try:
            response = pool.urlopen(
                "POST",
                target,
                body=body,
                headers={**headers, "Host": host_header},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            response.read(64 * 1024)  # the answer's body is not used; a bounded read
            response.release_conn()
            return Answer(response.status, int((time.monotonic() - started) * 1000))
        except urllib3.exceptions.NewConnectionError as exc:
            last_error = f"Cannot connect to {address}: {_reason(exc)}"
            continue  # the next address of the host, if any
        except urllib3.exceptions.HTTPError as exc:
            raise DeliveryFailed(_describe(exc)) from None
        finally:
            pool.close()
    raise DeliveryFailed(last_error or f"Cannot connect to {host}")


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1] if ": " in text else text


def _describe(exc: urllib3.exceptions.HTTPError) -> str:
    if isinstance(exc, urllib3.exceptions.TimeoutError | urllib3.exceptions.ReadTimeoutError):
        return f"No answer within {TIMEOUT_SECONDS} seconds"
    if isinstance(exc, urllib3.exceptions.SSLError):
        return f"TLS failed: {_reason(exc)}"
    if isinstance(exc, urllib3.exceptions.ProtocolError):
        return f"Connection broken: {_reason(exc)}"
    return f"{type(exc).__name__}: {_reason(exc)}"


# --- Upkeep and e-mail -------------------------------------------------------------------------


def prune(*, now: datetime | None = None) -> None:
    """Forget the delivery log, and finished deliveries, older than WEBHOOK_LOG_DAYS."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.WEBHOOK_LOG_DAYS)
    WebhookAttempt.objects.filter(at__lt=cutoff).delete()
    WebhookDelivery.objects.exclude(state=DeliveryState.PENDING).filter(
        finished_at__lt=cutoff
    ).delete()


def _tell_owner_of_disabling(endpoint: WebhookEndpoint, last_error: str) -> None:
    owner = endpoint.created_by
    to = [owner.email] if owner is not None and owner.is_active and owner.email else []
    if not to:  # nobody owns it any more: the administrators
        admins = get_user_model().objects.filter(is_active=True, is_superuser=True)
        to = [user.email for user in admins.exclude(email="").order_by("pk")]
    if not to:
        logger.warning("No one to email about disabled webhook endpoint %s", endpoint.code)
        return
    url = settings.SITE_URL + reverse("webhook_detail", kwargs={"code": endpoint.code})
    body = (
        f"Deliveries to the webhook endpoint {endpoint.url} have failed for 24 hours, so the "
        f"portal has stopped sending to it.\n\nThe last attempt: {last_error}\n\n"
        f"Fix the receiver, then enable the endpoint again on its page:\n{url}\n"
    )
    try:
        send_mail("A webhook endpoint was disabled", body, None, to)
    except Exception as exc:  # a mail server problem must not undo the recorded attempt
        logger.error(
            "Could not email about webhook endpoint %s: %s", endpoint.code, type(exc).__name__
        )
