from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections_app.crypto import KeyConfigError, generate_key


class Command(BaseCommand):
    help = "Print a new ENCRYPTION_KEYS entry (<key id>:<base64 key>). Prepend it to rotate."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--id", dest="key_id", help="Key id (default: random, e.g. k1a2b3c4).")

    def handle(self, *args: Any, key_id: str | None = None, **options: Any) -> None:
        try:
            self.stdout.write(generate_key(key_id))
        except KeyConfigError as exc:
            raise CommandError(str(exc)) from None
