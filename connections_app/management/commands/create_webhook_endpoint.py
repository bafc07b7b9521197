from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections_app.models import WebhookEndpoint, WebhookEvent, WebhookFormat
from connections_app.webhook_views import WebhookEndpointForm


class Command(BaseCommand):
    help = (
        "Add a webhook endpoint and print its signing secret (on stdout), once. Events "
        "default to all: "
        + ", ".join(e.value for e in WebhookEvent if e != WebhookEvent.WEBHOOK_TEST)
        + "."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("url", help="Where to POST events (http:// or https://).")
        parser.add_argument(
            "--events", default="", help="Comma-separated event types (default: all)."
        )
        parser.add_argument(
            "--format",
            choices=WebhookFormat.values,
            default=WebhookFormat.STANDARD,
            help='standard (signed JSON, the default) or slack ({"text": …}).',
        )
        parser.add_argument("--description", default="", help="What receives the events.")

    def handle(
        self, *args: Any, url: str, events: str, format: str, description: str, **options: Any
    ) -> None:
        wanted = [name.strip() for name in events.split(",") if name.strip()]
        form = WebhookEndpointForm(
            data={
                "url": url,
                "description": description,
                "format": format,
                "event_types": wanted,
            }
        )
        if not form.is_valid():
            problems = [
                f"{'--events' if name == 'event_types' else name}: "
                + " ".join(str(error) for error in errors)
                for name, errors in form.errors.items()
            ]
            raise CommandError("; ".join(problems))
        endpoint: WebhookEndpoint = form.save(commit=False)
        secret = endpoint.new_secret()
        endpoint.secret = secret
        try:
            endpoint.full_clean()
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        endpoint.save()
        # The secret alone on stdout, so that scripts can capture it; the note on stderr.
        self.stderr.write(
            f"Webhook endpoint {endpoint.url} created ({endpoint.get_format_display()}, "
            f"{endpoint.events_display()}). Its signing secret, shown only this once:"
        )
        self.stdout.write(secret)
