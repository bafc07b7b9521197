"""`make bench`: the portal at 100,000 connections, on PostgreSQL.

Run by ``bench/run`` inside ``bin/with-postgres``. It bulk-inserts connections (20 OAuth 2.0
clients, both environments; about 96% Online, the rest Offline, needing reauthorization or
never authorized) and prints:

- the connections list page, its search and each of its filters and sorts, at 100 and at
  100,000 connections: SQL queries per page, the rows it shows, and the median and best time
  to render it over BENCH_ROUNDS renders (Django's test client, in process, no network), with
  the ratio of the best times between the two sizes. The best time is what the page costs when
  nothing else competes for the machine (timeit's reasoning: slower runs are other processes
  interfering, not the code); the median shows how much they did. Goals: the same query count
  at both sizes; the plain list at 100,000 within 1.5x of its time at 100;
- the worker's due query at 100,000 (its plan, which must be one index range scan, and its
  time) and one pass over 1,000 due connections against the fake Kroger (https): time, calls
  to Kroger's token endpoint, renewals a second, and the database connections the worker's
  threads opened (one each per pass, not one per renewal).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from bench import harness

LARGE = int(os.environ.get("BENCH_LARGE", "100000"))
SMALL = 100
DUE = 1000
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "25"))
CLIENTS = 20


def make_clients(fake: Any) -> list[Any]:
    return [
        harness.registered_client(
            fake,
            f"Bench app {number:02}",
            f"bench-app-{number:02}",
            environment="production" if number % 2 == 0 else "certification",
        )
        for number in range(CLIENTS)
    ]


def insert(clients: list[Any], start: int, count: int) -> None:
    """Bulk-insert connections ``start`` .. ``start + count``: most Online and idle (their
    next renewal a day away at most), a few in each state that needs attention."""
    from django.utils import timezone

    from connections_app import renewal_policy
    from connections_app.models import NEEDS_REAUTHORIZATION, Connection, Scope

    now = timezone.now()
    scope = Scope.objects.get(name="product.compact")
    through = Connection.scopes.through
    batch = 5000
    for first in range(start, start + count, batch):
        rows = []
        for number in range(first, min(first + batch, start + count)):
            client = clients[number % CLIENTS]
            kind = number % 100
            row = Connection(
                name=f"Connection {number:06}",
                environment=client.environment,
                client=client,
            )
            if kind != 99:  # 1% were never authorized
                renewed = now - timedelta(minutes=(number * 7) % 1400 + 10)
                row.status = "online"
                row.access_token = f"bench-access-{number}"
                row.refresh_token = f"bench-refresh-{number}"
                row.token_expires_at = renewed + timedelta(minutes=30)
                row.authorized_at = renewed
                row.granted_scopes = "product.compact"
                if kind in (97, 98):  # 2% offline, half of them needing a person
                    row.status = "offline"
                    row.status_reason = (
                        NEEDS_REAUTHORIZATION if kind == 97 else "Kroger unreachable: timeout"
                    )
            row.renewal_due_at = renewal_policy.renewal_due(row)
            rows.append(row)
        Connection.objects.bulk_create(rows)
        made = Connection.objects.filter(name__gte=rows[0].name, name__lte=rows[-1].name)
        through.objects.bulk_create(
            [
                through(connection_id=pk, scope_id=scope.pk)
                for pk in made.values_list("pk", flat=True)
            ]
        )


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
        # Write out what the bulk insert left in memory now, not while the first page is timed.
        cursor.execute("CHECKPOINT")


def pages(clients: list[Any]) -> dict[str, str]:
    return {
        "list": "/",
        "page 3": "/?page=3",
        "search": "/?q=00004",  # matches at both sizes
        "status Online": "/?status=online",
        "status Offline": "/?status=offline",
        "status Needs reauthorization": "/?status=needs_reauthorization",
        "status Not authorized": "/?status=not_authorized",
        "environment": "/?environment=certification",
        "OAuth 2.0 client": f"/?client={clients[3].code}",
        "needs attention first": "/?sort=attention",
    }


def warm_up(browser: Any, clients: list[Any]) -> None:
    """Every page once, so that the first one timed finds the caches as the others do."""
    for url in pages(clients).values():
        browser.get(url, HTTP_X_FORWARDED_PROTO="https")


def measure(browser: Any, url: str) -> tuple[int, int, float, float]:
    """Queries, rows shown, and the median and best times in ms of the page at ``url``."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        response = browser.get(url, HTTP_X_FORWARDED_PROTO="https")
    assert response.status_code == 200, (url, response.status_code, response.get("Location"))
    count = len(queries.captured_queries)  # now: a reconnection later would clear the log
    rows = response.content.decode().count('<td data-label="Name"')
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        browser.get(url, HTTP_X_FORWARDED_PROTO="https")
        times.append(time.perf_counter() - started)
    return count, rows, statistics.median(times) * 1000, min(times) * 1000


def due_query() -> tuple[str, float, int]:
    """The plan and time of one claim of the worker's; the claim is then handed back."""
    from django.db import connection, transaction
    from django.utils import timezone

    from connections_app import lifecycle
    from connections_app.models import Connection

    due = lifecycle.due_for_refresh().select_for_update(skip_locked=True)
    query = due.values_list("pk", flat=True)[:100]
    with transaction.atomic(), connection.cursor() as cursor:
        sql, params = query.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(f"    {row[0]}" for row in cursor.fetchall())
    started = time.perf_counter()
    claimed = lifecycle.claim_due(limit=100)
    seconds = time.perf_counter() - started
    Connection.objects.filter(pk__in=claimed).update(renewal_due_at=timezone.now())
    return plan, seconds * 1000, len(claimed)


def make_due(fake: Any, clients: list[Any]) -> None:
    """DUE connections with live grants at the fake Kroger and a renewal due now."""
    from django.utils import timezone

    from connections_app.models import Connection

    now = timezone.now()
    for number, connection in enumerate(
        Connection.objects.filter(status="online").select_related("client").order_by("pk")[:DUE]
    ):
        access, refresh = fake.issue_tokens(connection.client.client_id, ["product.compact"])
        connection.access_token, connection.refresh_token = access, refresh
        connection.authorized_at = now - timedelta(hours=25, seconds=number)
        connection.save()


def timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def main() -> int:
    with harness.portal_on_postgres(
        "scale",
        ALLOWED_HOSTS="localhost,testserver",
        SECURE_SSL_REDIRECT="false",
        STATIC_ROOT="{work}/static",  # collected below, as in production
    ) as (fake, _work):
        from django.contrib.auth import get_user_model
        from django.core.management import call_command
        from django.test import Client
        from django.test.utils import setup_test_environment

        setup_test_environment()  # the test client's template rendering hooks
        call_command("collectstatic", "--noinput", verbosity=0)
        from django.contrib.auth.models import Group

        from connections_app.access import VIEWERS

        # A viewer: administrators must set up two-factor authentication before any page.
        viewer = get_user_model().objects.create_user("bench", "bench@example.com", "x")
        viewer.groups.add(Group.objects.get(name=VIEWERS))
        browser = Client()
        browser.force_login(viewer)
        clients = make_clients(fake)

        insert(clients, 0, SMALL)
        analyze()
        warm_up(browser, clients)
        small = {name: measure(browser, url) for name, url in pages(clients).items()}
        _, seconds = timed(lambda: insert(clients, SMALL, LARGE - SMALL))
        analyze()
        print(f"\n== {LARGE:,} connections on PostgreSQL (bulk-inserted in {seconds:.0f} s)")
        warm_up(browser, clients)
        large = {name: measure(browser, url) for name, url in pages(clients).items()}

        # A filter that matches a row or two of the 100 shows fewer rows than at 100,000:
        # its time then also differs by the rendering of the rows, shown beside it.
        heads = ("queries", "rows shown", "median ms", "best ms")
        print(f"{'connections list':30}" + "".join(f"{head:>16}" for head in heads) + "  ratio")
        print(f"{'':30}" + f"{SMALL:>8}{LARGE:>8}" * 4 + "  (best)")
        met = True
        for name, measured_small in small.items():
            measured_large = large[name]
            ratio = measured_large[3] / measured_small[3]
            same = measured_small[0] == measured_large[0]
            met = met and same and (name != "list" or ratio <= 1.5)
            cells = "".join(
                f"{a:>8}{b:>8}" if isinstance(a, int) else f"{a:>8.1f}{b:>8.1f}"
                for a, b in zip(measured_small, measured_large, strict=True)
            )
            goal = "  (goal 1.5x)" if name == "list" else ""
            differ = "" if same else "  QUERIES DIFFER"
            print(f"{name:30}{cells}  {ratio:4.2f}x{goal}{differ}")

        make_due(fake, clients)
        analyze()
        plan, ms, claimed = due_query()
        print(f"\nworker's due query at {LARGE:,}: claimed {claimed} in {ms:.1f} ms; plan:")
        print(plan)
        met = met and "connection_renewal_due" in plan
        from django.conf import settings
        from django.db.backends.signals import connection_created

        from connections_app import worker

        opened: list[object] = []

        def count_opened(**kwargs: Any) -> None:
            opened.append(kwargs["connection"])

        connection_created.connect(count_opened)
        calls_before = len(fake.token_calls)
        handled = passes = 0
        started = time.perf_counter()
        while (renewed := worker.refresh_due(concurrency=4)) > 0:
            handled += renewed
            passes += 1
        seconds = time.perf_counter() - started
        connection_created.disconnect(count_opened)
        calls = len(fake.token_calls) - calls_before
        print(
            f"one pass over {DUE:,} due connections (4 threads, fake Kroger over https): "
            f"{handled} renewed, {calls} calls to Kroger's token endpoint, {seconds:.1f} s, "
            f"{handled / seconds:.0f} renewals/s"
        )
        # Each thread keeps one connection, replaced once it is CONN_MAX_AGE old.
        max_age = settings.DATABASES["default"]["CONN_MAX_AGE"] or 1
        allowed = 4 * (passes + 1) * (1 + int(seconds // max_age))
        print(
            f"database connections the worker opened: {len(opened)} for {handled} renewals "
            f"(goal: at most {allowed}, one per thread per pass and per {max_age} s)"
        )
        met = met and calls == handled == DUE and len(opened) <= allowed
    print("goals met" if met else "GOALS MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
