"""`make bench`: what a Prometheus scrape of /metrics costs as the portal grows.

Run by ``bench/run`` inside ``bin/with-postgres`` (which provides TEST_DATABASE_URL). It fills
a throwaway database with 100, then 10,000, then 100,000 connections (in every status, with two
audit events each and a webhook delivery per hundred) and prints, for each size, the SQL
queries one scrape makes, the series it returns and its median time over several scrapes (in
process, through Django's test client: the database work, not the network).
"""

from __future__ import annotations

import os
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 10_000, 100_000)
SCRAPES = 7
TOKEN = secrets.token_urlsafe(24)  # this run's METRICS_TOKEN


def grow(client: object, have: int, want: int) -> None:
    from connections_app.models import (
        NEEDS_REAUTHORIZATION,
        AuditAction,
        AuditEvent,
        Connection,
        WebhookDelivery,
        WebhookEndpoint,
    )

    endpoint = WebhookEndpoint.objects.first() or WebhookEndpoint.objects.create(
        url="https://hooks.example.com/", secret=WebhookEndpoint.new_secret()
    )
    statuses = [
        ("online", ""),
        ("online", ""),
        ("offline", "Kroger unreachable: timeout"),
        ("offline", NEEDS_REAUTHORIZATION),
        ("not_authorized", ""),
    ]
    batch = 5_000
    for start in range(have, want, batch):
        stop = min(start + batch, want)
        made = Connection.objects.bulk_create(
            Connection(
                name=f"Bench connection {index}",
                environment="production" if index % 2 else "certification",
                client=client,  # type: ignore[misc]
                status=statuses[index % len(statuses)][0],
                status_reason=statuses[index % len(statuses)][1],
            )
            for index in range(start, stop)
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(action=action, connection=connection, subject=connection.name)
            for connection in made
            for action in (AuditAction.REFRESHED, AuditAction.TOKEN_ISSUED)
        )
        WebhookDelivery.objects.bulk_create(
            WebhookDelivery(endpoint=endpoint, event="connection.offline", payload="{}")
            for connection in made[::100]
        )


def scrape() -> tuple[int, int, float]:
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from prometheus_client.parser import text_string_to_metric_families

    client = Client(HTTP_HOST="localhost", HTTP_X_FORWARDED_PROTO="https")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timings = []
    for _ in range(SCRAPES):
        with CaptureQueriesContext(db) as queries:
            began = time.perf_counter()
            response = client.get("/metrics", headers=headers)
            timings.append(time.perf_counter() - began)
        assert response.status_code == 200, response.status_code
    text = response.content.decode()
    series = sum(len(family.samples) for family in text_string_to_metric_families(text))
    return len(queries.captured_queries), series, statistics.median(timings) * 1000


def main() -> int:
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        print("bench needs a PostgreSQL database: run it through bench/run", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from bench.benchmark import configure

    configure(db_url, "https://127.0.0.1:9/v1/")  # Kroger is never called here
    os.environ["METRICS_TOKEN"] = TOKEN

    import django

    django.setup()
    from django.core.management import call_command

    from connections_app.models import OAuthClient

    call_command("migrate", verbosity=0)
    client, _ = OAuthClient.objects.get_or_create(
        name="Bench metrics app",
        defaults={"environment": "production", "client_id": "bench", "client_secret": "bench"},
    )
    print("\n/metrics scrape (PostgreSQL, in process)")
    print(f"{'connections':>12} {'queries':>8} {'series':>7} {'median ms':>10}")
    have = 0
    for size in SIZES:
        grow(client, have, size)
        have = size
        queries, series, median = scrape()
        print(f"{size:>12,} {queries:>8} {series:>7} {median:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
