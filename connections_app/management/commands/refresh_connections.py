from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections_app import worker
from connections_app.management.commands.run_worker import (
    add_worker_arguments,
    check_worker_arguments,
)


class Command(BaseCommand):
    help = (
        "Refresh, once, every connection that is due (token about to expire, or an "
        "authorization-code connection not refreshed for a day), then exit. For cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_worker_arguments(parser)

    def handle(self, *args: Any, window: int, concurrency: int, **options: Any) -> None:
        window_delta = check_worker_arguments(window, concurrency)
        handled = worker.refresh_due(window=window_delta, concurrency=concurrency)
        self.stdout.write(f"{handled} connection(s) handled")
