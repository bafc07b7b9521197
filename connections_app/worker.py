"""The worker: keeps connections alive by the keep-alive policy, without anyone looking.

Each pass claims what is due (``lifecycle.claim_due``: one indexed range scan of
``renewal_due_at``, FOR UPDATE SKIP LOCKED, in batches) and renews it, at most
``concurrency`` at a time, then delivers the webhooks due. Claims are leased, so several
workers can run at once without doing the same work twice. One log line per connection
handled; never a secret.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from django.db import DatabaseError, close_old_connections, connections

from connections_app import lifecycle, webhooks
from connections_app.models import PortalMetric

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL = 60  # seconds between passes
DEFAULT_CONCURRENCY = 4
BATCH = 100  # claimed at once
PASS_LIMIT = 2000  # at most this many per pass; the rest wait for the next one


def refresh_due(
    *, concurrency: int = DEFAULT_CONCURRENCY, stop: threading.Event | None = None
) -> int:
    """One pass: renew every connection due now, then deliver the webhooks due. Returns how
    many connections this worker handled."""
    handled = _renewal_pass(concurrency=concurrency, stop=stop)
    try:
        webhooks.deliver_due(stop=stop)
    except Exception as exc:  # a webhook problem must not stop the renewals
        logger.error("Webhook delivery pass crashed (%s)", type(exc).__name__)
    PortalMetric.put(PortalMetric.WORKER_LAST_PASS, time.time())
    return handled


def _renewal_pass(*, concurrency: int, stop: threading.Event | None) -> int:
    if concurrency <= 1:
        return _claim_and_renew(lambda ids: sum(_renew_one(pk, stop=stop) for pk in ids), stop)
    with RenewalThreads(concurrency, stop) as threads:
        return _claim_and_renew(threads.renew, stop)


class RenewalThreads:
    """``count`` threads that renew claimed connections during one pass.

    Each keeps one database connection for all its renewals, with the discipline Django
    applies to requests: ``close_old_connections`` before and after each renewal replaces a
    connection that broke or outlived CONN_MAX_AGE (on SQLite, where CONN_MAX_AGE is 0, that
    is every renewal), and the thread closes its connection when the pass ends. Opening a
    connection for every renewal would cost PostgreSQL a new backend each time.
    """

    def __init__(self, count: int, stop: threading.Event | None) -> None:
        self.stop = stop
        self.todo: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self.done: queue.SimpleQueue[bool] = queue.SimpleQueue()
        self.threads = [
            threading.Thread(target=self._work, name=f"refresh-{number}", daemon=True)
            for number in range(count)
        ]

    def __enter__(self) -> RenewalThreads:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for _ in self.threads:
            self.todo.put(None)
        for thread in self.threads:
            thread.join()

    def renew(self, ids: list[int]) -> int:
        """Renew ``ids`` across the threads; returns how many were handled."""
        for pk in ids:
            self.todo.put(pk)
        return sum(self.done.get() for _ in ids)

    def _work(self) -> None:
        try:
            while (pk := self.todo.get()) is not None:
                handled = False
                try:
                    close_old_connections()
                    handled = _renew_one(pk, stop=self.stop)
                    close_old_connections()
                except Exception as exc:  # the pass must go on, and hear back from each
                    logger.error("Connection #%s: refresh crashed (%s)", pk, type(exc).__name__)
                finally:
                    self.done.put(handled)
        finally:
            connections.close_all()  # this thread's connections only


def _claim_and_renew(renew: Callable[[list[int]], int], stop: threading.Event | None) -> int:
    handled = claimed = 0
    while claimed < PASS_LIMIT and not (stop is not None and stop.is_set()):
        ids = lifecycle.claim_due(limit=min(BATCH, PASS_LIMIT - claimed))
        if not ids:
            break
        claimed += len(ids)
        handled += renew(ids)
    return handled


def _renew_one(pk: int, *, stop: threading.Event | None) -> bool:
    if stop is not None and stop.is_set():
        return False  # stopping: its claim runs out and the next pass takes it
    try:
        claimed = lifecycle.renew_claimed(pk)
    except Exception as exc:
        # The class only: a database error's message can quote the values it was writing.
        logger.error("Connection #%s: refresh crashed (%s)", pk, type(exc).__name__)
        return False
    if claimed is None:
        return False  # a caller holds it, or it is no longer due
    connection, outcome = claimed
    logger.info("Connection %s (%s): %s", connection.code, connection.name, outcome.summary)
    return True


def run(
    *,
    stop: threading.Event,
    interval: float = DEFAULT_INTERVAL,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> None:
    """Renew what is due every ``interval`` seconds until ``stop`` is set; the pass under
    way when it is set finishes its in-flight renewals first."""
    logger.info("Worker started: every %ss, %s at a time", interval, concurrency)
    while not stop.is_set():
        try:
            refresh_due(concurrency=concurrency, stop=stop)
        except DatabaseError as exc:
            logger.error("Worker pass failed: %s; retrying in %ss", type(exc).__name__, interval)
        finally:
            close_old_connections()
        stop.wait(interval)
    logger.info("Worker stopped")
