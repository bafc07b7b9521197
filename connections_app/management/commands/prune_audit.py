from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from connections_app.models import AuditAction, AuditEvent


class Command(BaseCommand):
    help = (
        "Delete audit events older than --older-than DAYS. Without it nothing is deleted: "
        "the portal keeps its audit log for ever unless told otherwise."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", type=int, metavar="DAYS", help="Delete events older than this."
        )

    def handle(self, *args: Any, older_than: int | None = None, **options: Any) -> None:
        if older_than is None:
            self.stdout.write("Keeping every audit event (pass --older-than DAYS to prune).")
            return
        if older_than < 1:
            raise CommandError("--older-than must be at least 1 day")
        cutoff = timezone.now() - timedelta(days=older_than)
        deleted, _ = AuditEvent.objects.filter(at__lt=cutoff).delete()
        self.stdout.write(f"Deleted {deleted} audit event(s) older than {older_than} day(s).")
        if deleted:
            AuditEvent.record(
                AuditAction.AUDIT_PRUNED,
                actor_label="manage.py prune_audit",
                detail=f"{deleted} event(s) older than {older_than} day(s) deleted",
            )
