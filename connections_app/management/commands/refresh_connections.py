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
        "Renew, once, every connection the keep-alive policy says is due (a warm token about "
        "to expire, an idle grant last renewed a day ago), then exit. For cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        add_worker_arguments(parser)

    def handle(self, *args: Any, concurrency: int, **options: Any) -> None:
        check_worker_arguments(concurrency)
        handled = worker.refresh_due(concurrency=concurrency)
        self.stdout.write(f"{handled} connection(s) handled")
