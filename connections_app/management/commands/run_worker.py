from __future__ import annotations

import signal
import threading
from datetime import timedelta
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections_app import worker
from connections_app.models import Connection


def add_worker_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--window",
        type=int,
        default=int(worker.DEFAULT_WINDOW.total_seconds()),
        help="Refresh tokens that expire within this many seconds (default %(default)s).",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=worker.DEFAULT_CONCURRENCY,
        help="Refresh at most this many connections at once (default %(default)s).",
    )


def check_worker_arguments(window: int, concurrency: int, interval: int = 0) -> timedelta:
    if not 1 <= concurrency <= 32:
        raise CommandError("--concurrency must be between 1 and 32")
    margin = int(Connection.TOKEN_SAFETY_MARGIN.total_seconds())
    if window < interval + margin:
        raise CommandError(
            f"--window must be at least --interval plus {margin} seconds, or tokens can expire "
            "between two passes"
        )
    return timedelta(seconds=window)


class Command(BaseCommand):
    help = (
        "Keep every connection alive: every --interval seconds, refresh the tokens that are "
        "about to expire and every authorization-code connection not refreshed for a day. "
        "Stops cleanly on SIGTERM or Ctrl-C. Several may run at once against PostgreSQL."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--interval",
            type=int,
            default=worker.DEFAULT_INTERVAL,
            help="Seconds between passes (default %(default)s).",
        )
        add_worker_arguments(parser)

    def handle(
        self, *args: Any, interval: int, window: int, concurrency: int, **options: Any
    ) -> None:
        if interval < 1:
            raise CommandError("--interval must be at least 1 second")
        window_delta = check_worker_arguments(window, concurrency, interval)
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(f"{signal.Signals(signum).name}: finishing the current work")
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            worker.run(stop=stop, interval=interval, window=window_delta, concurrency=concurrency)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
