from __future__ import annotations

from collections import Counter
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from connections_app import mfa
from connections_app.crypto import DecryptionError, get_key_ring, key_id_of
from connections_app.fields import EncryptedTextField
from connections_app.models import AuditAction, AuditEvent


def encrypted_models() -> list[tuple[Any, list[EncryptedTextField]]]:
    found = []
    for model in apps.get_app_config("connections_app").get_models():
        fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if fields:
            found.append((model, fields))
    return found


def count_by_key() -> Counter[str]:
    counts: Counter[str] = Counter()
    for model, fields in encrypted_models():
        for row in model.objects.values_list(*[f.attname for f in fields]):
            counts.update(key_id_of(value) for value in row if value)
    return counts + mfa.count_keys()


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the first key of ENCRYPTION_KEYS. Afterwards "
        "the other keys can be removed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would change; write nothing."
        )

    def handle(self, *args: Any, dry_run: bool = False, **options: Any) -> None:
        ring = get_key_ring()
        self.stdout.write(f"Primary key: {ring.primary.key_id}")
        self._print_counts("Before", count_by_key())
        changed = 0
        try:
            with transaction.atomic():
                for model, fields in encrypted_models():
                    for obj in model.objects.select_for_update().order_by("pk").iterator():
                        stale = [f for f in fields if ring.needs_rotation(obj.__dict__[f.attname])]
                        if not stale:
                            continue
                        for field in stale:
                            getattr(obj, field.attname)  # decrypts with the old key
                        changed += 1
                        if not dry_run:
                            obj.save(update_fields=[f.attname for f in stale])
                # Second factors' secrets live in allauth's table (see connections_app/mfa.py).
                changed += mfa.rotate_secrets()
                if dry_run:
                    transaction.set_rollback(True)
        except DecryptionError as exc:
            raise CommandError(f"Nothing was changed: {exc}") from None
        verb = "Would re-encrypt" if dry_run else "Re-encrypted"
        self.stdout.write(f"{verb} {changed} record(s).")
        if not dry_run:
            self._print_counts("After", count_by_key())
            if changed:
                AuditEvent.record(
                    AuditAction.KEYS_ROTATED,
                    actor_label="manage.py rotate_encryption_keys",
                    detail=f"{changed} record(s) re-encrypted under key {ring.primary.key_id}",
                )

    def _print_counts(self, label: str, counts: Counter[str]) -> None:
        summary = ", ".join(f"{key}: {n}" for key, n in sorted(counts.items())) or "no secrets"
        self.stdout.write(f"{label}: {summary}")
