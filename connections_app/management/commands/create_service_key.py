from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from connections_app.models import Connection, ServiceKey
from connections_app.validators import name_validator


class Command(BaseCommand):
    help = (
        "Create a service key for the service API and print it once (only its hash is kept). "
        "Name the connections it may use with --connection, or give it --all. It may call "
        "Kroger through the portal (--proxy) and/or fetch access tokens (--token); with "
        "neither flag, it may only proxy."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="What the key is for, e.g. 'Shopping list service'.")
        parser.add_argument(
            "--connection",
            action="append",
            default=[],
            metavar="ID_OR_NAME",
            help="A connection the key may use: its public id or its name. Repeat for more.",
        )
        parser.add_argument(
            "--all", action="store_true", dest="all_connections", help="May use every connection."
        )
        parser.add_argument(
            "--expires-in-days", type=int, metavar="N", help="Stop working after N days."
        )
        parser.add_argument(
            "--token",
            action="store_true",
            help="May fetch access tokens (the service then holds Kroger tokens itself).",
        )
        parser.add_argument(
            "--proxy",
            action="store_true",
            help="May call Kroger through the portal (the default when neither flag is given).",
        )

    def handle(
        self,
        *args: Any,
        name: str,
        connection: list[str],
        all_connections: bool,
        expires_in_days: int | None,
        token: bool = False,
        proxy: bool = False,
        **options: Any,
    ) -> None:
        if all_connections and connection:
            raise CommandError("Give either --all or --connection, not both.")
        if not all_connections and not connection:
            raise CommandError("Name the connections the key may use (--connection), or --all.")
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be 1 or more.")
        try:
            name_validator(name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        if ServiceKey.objects.filter(name=name).exists():
            raise CommandError(f"A service key named {name!r} exists already.")
        connections = [self._connection(ident) for ident in connection]
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, raw = ServiceKey.create_key(
            name=name,
            connections=connections,
            all_connections=all_connections,
            expires_at=expires_at,
            may_fetch_tokens=token,
            may_proxy=proxy or not token,
            actor_label="manage.py create_service_key",
        )
        self.stderr.write(
            f"Created service key {key.name!r} ({key.key_prefix}…) for {key.scope_display()}"
            f", allowed {key.permission_display()}"
            + (f", expiring {expires_at:%Y-%m-%d %H:%M %Z}" if expires_at else "")
            + ". It is shown once, below: store it in your service's secrets now."
        )
        # The key alone on stdout, so that scripts can capture it.
        self.stdout.write(raw)

    def _connection(self, ident: str) -> Connection:
        try:
            return Connection.objects.get(code=uuid.UUID(ident))
        except (ValueError, Connection.DoesNotExist):
            pass
        try:
            return Connection.objects.get(name=ident)
        except Connection.DoesNotExist:
            raise CommandError(f"No connection has the id or name {ident!r}.") from None
