"""The worker: keeps every connection's token fresh without anyone looking at it.

Each pass lists the connections due for a refresh (``lifecycle.due_for_refresh``) and
refreshes them, at most ``concurrency`` at a time. Each refresh claims its row with
SELECT ... FOR UPDATE SKIP LOCKED on PostgreSQL, so several workers can run at once without
doing the same work twice. One log line per connection handled; never a secret.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.db import DatabaseError, close_old_connections, connections

from connections_app import lifecycle, webhooks
from connections_app.models import PortalMetric

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60  # seconds between passes
DEFAULT_WINDOW = timedelta(minutes=5)  # refresh tokens that expire within this
DEFAULT_CONCURRENCY = 4
BATCH = 500  # at most this many per pass; the rest wait for the next one


def refresh_due(
    *,
    window: timedelta = DEFAULT_WINDOW,
    concurrency: int = DEFAULT_CONCURRENCY,
    stop: threading.Event | None = None,
) -> int:
    """One pass: refresh every connection due now, then deliver the webhooks due. Returns how
    many connections this worker handled."""
    handled = _refresh_pass(window=window, concurrency=concurrency, stop=stop)
    try:
        webhooks.deliver_due(stop=stop)
    except Exception as exc:  # a webhook problem must not stop the refreshes
        logger.error("Webhook delivery pass crashed (%s)", type(exc).__name__)
    PortalMetric.put(PortalMetric.WORKER_LAST_PASS, time.time())
    return handled


def _refresh_pass(*, window: timedelta, concurrency: int, stop: threading.Event | None) -> int:
    _offline_if_expired()
    due = lifecycle.due_for_refresh(window=window).order_by("token_expires_at", "pk")
    ids = list(due.values_list("pk", flat=True)[:BATCH])
    if not ids:
        return 0
    if concurrency <= 1:
        return sum(_refresh_one(pk, window=window, stop=stop) for pk in ids)
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="refresh") as pool:
        handled = pool.map(lambda pk: _refresh_in_thread(pk, window=window, stop=stop), ids)
        return sum(handled)


def _offline_if_expired() -> None:
    """Connections whose token expired while a failed refresh backs off are not due (the
    backoff holds them back), yet they have no usable token left: mark them Offline now, so
    that pages say so and people are told, rather than when the backoff ends. No HTTP call."""
    expired = lifecycle.expired_while_backing_off()
    for pk in list(expired.values_list("pk", flat=True)[:BATCH]):
        try:
            claimed = lifecycle.offline_if_expired(pk)
        except Exception as exc:
            logger.error("Connection #%s: status check crashed (%s)", pk, type(exc).__name__)
            continue
        if claimed is not None:
            connection, outcome = claimed
            logger.info("Connection %s (%s): %s", connection.code, connection.name, outcome.summary)


def _refresh_in_thread(pk: int, *, window: timedelta, stop: threading.Event | None) -> bool:
    try:
        return _refresh_one(pk, window=window, stop=stop)
    finally:
        connections.close_all()  # this thread's connections only


def _refresh_one(pk: int, *, window: timedelta, stop: threading.Event | None) -> bool:
    if stop is not None and stop.is_set():
        return False  # stopping: the next worker run picks it up
    try:
        claimed = lifecycle.refresh_if_due(pk, window=window)
    except Exception as exc:
        # The class only: a database error's message can quote the values it was writing.
        logger.error("Connection #%s: refresh crashed (%s)", pk, type(exc).__name__)
        return False
    if claimed is None:
        return False  # another worker holds it, or it is no longer due
    connection, outcome = claimed
    logger.info("Connection %s (%s): %s", connection.code, connection.name, outcome.summary)
    return True


def run(
    *,
    stop: threading.Event,
    interval: float = DEFAULT_INTERVAL,
    window: timedelta = DEFAULT_WINDOW,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> None:
    """Refresh what is due every ``interval`` seconds until ``stop`` is set; the pass under
    way when it is set finishes its in-flight refreshes first."""
    logger.info(
        "Worker started: every %ss, tokens expiring within %ss, %s at a time",
        interval,
        int(window.total_seconds()),
        concurrency,
    )
    while not stop.is_set():
        try:
            refresh_due(window=window, concurrency=concurrency, stop=stop)
        except DatabaseError as exc:
            logger.error("Worker pass failed: %s; retrying in %ss", type(exc).__name__, interval)
        finally:
            close_old_connections()
        stop.wait(interval)
    logger.info("Worker stopped")
