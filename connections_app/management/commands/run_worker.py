from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections_app import renewal_policy, worker


def add_worker_arguments(parser: CommandParser) -> None:
    parser.add_argument(
        "--concurrency",
        type=int,
        default=worker.DEFAULT_CONCURRENCY,
        help="Renew at most this many connections at once (default %(default)s).",
    )


def check_worker_arguments(concurrency: int, interval: int = 0) -> None:
    if not 1 <= concurrency <= 32:
        raise CommandError("--concurrency must be between 1 and 32")
    longest = int((renewal_policy.RENEW_AHEAD - renewal_policy.TOKEN_SAFETY_MARGIN).total_seconds())
    if interval > longest:
        raise CommandError(
            f"--interval must be at most {longest} seconds: warm tokens are renewed "
            f"{int(renewal_policy.RENEW_AHEAD.total_seconds())} seconds before they expire, and "
            "callers would otherwise wait for Kroger between two passes"
        )


class Command(BaseCommand):
    help = (
        "Keep every connection alive: every --interval seconds, renew what the keep-alive "
        "policy says is due (warm tokens before they expire, idle grants once a day). "
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

    def handle(self, *args: Any, interval: int, concurrency: int, **options: Any) -> None:
        if interval < 1:
            raise CommandError("--interval must be at least 1 second")
        check_worker_arguments(concurrency, interval)
        stop = threading.Event()

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stdout.write(f"{signal.Signals(signum).name}: finishing the current work")
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            worker.run(stop=stop, interval=interval, concurrency=concurrency)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
