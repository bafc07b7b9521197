"""`make bench`: the keep-alive policy over one simulated day.

Run by ``bench/run`` inside ``bin/with-postgres``. 1,000 authorization-code connections hold
real grants at the fake Kroger (tests/fakes, https); 100 of them are used: each has its token
handed out every 5 minutes, all day. The other 900 are never used. A simulated clock
(``django.utils.timezone.now``) starts at midnight with every access token lapsed and every
grant last renewed at some moment of the previous day, and advances one minute at a time for
24 hours; each minute the worker makes one pass (``worker.refresh_due``, as ``run_worker
--interval=60`` would), then the callers due that minute ask for their token
(``lifecycle.get_access_token``, as the token API and the proxy do). One worker, one thread:
the policy, not the worker's speed, is measured here (bench/scale.py times a pass).

Prints the calls to Kroger's token endpoint a day, per connection, warm and idle; the shortest
time between two renewals of one warm connection; and the callers that waited for Kroger,
on a warm connection and on an idle one (its first use). Goals: idle at most 1 a day; warm at
most one per token lifetime; no caller waits for Kroger on a warm connection.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

from bench import harness
from bench.harness import registered_client

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "1000"))
USED = int(os.environ.get("BENCH_USED", "100"))
USE_EVERY = timedelta(minutes=5)
STEP = timedelta(minutes=1)
DAY = timedelta(hours=24)
START = datetime(2026, 1, 5, tzinfo=UTC)


class Clock:
    """What ``timezone.now()`` answers while the day is simulated."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def seed(fake: Any, clock: Clock) -> list[int]:
    """The connections, all authorized, tokens lapsed, grants renewed during the last day;
    the first USED of them (by primary key) are the ones in use."""
    from connections_app import renewal_policy
    from connections_app.models import Connection, Scope

    client = registered_client(fake, "Bench app", "bench-app")
    rng = random.Random(13)  # noqa: S311 (a reproducible spread of times, not a secret)
    rows = []
    for number in range(CONNECTIONS):
        access, refresh = fake.issue_tokens("bench-app", ["product.compact"])
        renewed = clock.now - timedelta(seconds=rng.uniform(60, DAY.total_seconds()))
        row = Connection(
            name=f"Connection {number:04}",
            environment="production",
            client=client,
            status="online",
            access_token=access,
            refresh_token=refresh,
            token_expires_at=renewed + timedelta(minutes=30),
            granted_scopes="product.compact",
            authorized_at=renewed,
        )
        row.renewal_due_at = renewal_policy.renewal_due(row)
        rows.append(row)
    Connection.objects.bulk_create(rows, batch_size=500)
    scope = Scope.objects.get(name="product.compact")
    through = Connection.scopes.through
    made = list(Connection.objects.order_by("pk").values_list("pk", flat=True))
    through.objects.bulk_create([through(connection_id=pk, scope_id=scope.pk) for pk in made])
    return made[:USED]


def simulate(fake: Any, clock: Clock, used: list[int]) -> dict[str, Any]:
    from django.conf import settings

    from connections_app import lifecycle, worker
    from connections_app.lifecycle import Actor
    from connections_app.models import Connection

    keep_warm = timedelta(seconds=settings.KEEP_WARM_SECONDS)
    caller = Actor(label="bench caller")
    renewals: dict[int, list[datetime]] = defaultdict(list)
    last_hand_out: dict[int, datetime] = {}
    waited_warm = waited_idle = hand_outs = 0
    # Each used connection is asked for at its own minute of every 5.
    phase = {pk: index % int(USE_EVERY / STEP) for index, pk in enumerate(used)}
    end = clock.now + DAY
    minute = 0
    while clock.now < end:
        worker.refresh_due(concurrency=1)
        for pk, offset in phase.items():
            if minute % int(USE_EVERY / STEP) != offset:
                continue
            calls_before = len(fake.token_calls)
            connection = Connection.objects.select_related("client").get(pk=pk)
            lifecycle.get_access_token(connection, actor=caller)
            hand_outs += 1
            if len(fake.token_calls) > calls_before:
                previous = last_hand_out.get(pk)
                if previous is not None and clock.now - previous <= keep_warm:
                    waited_warm += 1
                else:
                    waited_idle += 1
            last_hand_out[pk] = clock.now
        for pk in Connection.objects.filter(last_refreshed_at=clock.now).values_list(
            "pk", flat=True
        ):
            renewals[pk].append(clock.now)
        clock.now += STEP
        minute += 1
    return {
        "renewals": renewals,
        "waited_warm": waited_warm,
        "waited_idle": waited_idle,
        "hand_outs": hand_outs,
    }


def report(result: dict[str, Any], used: list[int], total_calls: int, seconds: float) -> bool:
    from django.conf import settings

    from connections_app.models import Connection

    renewals: dict[int, list[datetime]] = result["renewals"]
    everyone = list(Connection.objects.values_list("pk", flat=True))
    used_set = set(used)
    warm = [len(renewals.get(pk, [])) for pk in used]
    idle = [len(renewals.get(pk, [])) for pk in everyone if pk not in used_set]
    gaps = [
        (later - earlier).total_seconds() / 60
        for pk in used
        for earlier, later in zip(renewals.get(pk, []), renewals.get(pk, [])[1:], strict=False)
    ]
    lifetime = 30  # minutes: the fake's expires_in, as Kroger's
    ok_idle = max(idle, default=0) <= 1
    ok_warm = min(gaps, default=lifetime) >= lifetime - 5 - 1e-9
    ok_wait = result["waited_warm"] == 0
    print(
        f"\n== Keep-alive over one simulated day ({len(everyone)} connections, {len(used)} used "
        f"every {int(USE_EVERY.total_seconds() // 60)} minutes; KEEP_WARM_SECONDS="
        f"{settings.KEEP_WARM_SECONDS}, KEEP_ALIVE_HOURS={settings.KEEP_ALIVE_HOURS}; "
        f"worker pass every minute)"
    )
    print(f"calls to Kroger's token endpoint in the day: {total_calls}")
    print(
        f"idle connection: {statistics.mean(idle):.2f} calls a day on average, at most "
        f"{max(idle, default=0)} (goal: at most 1)   {'ok' if ok_idle else 'MISSED'}"
    )
    print(
        f"warm connection: {statistics.mean(warm):.1f} calls a day on average (at most "
        f"{max(warm, default=0)}); shortest time between two renewals "
        f"{min(gaps, default=0):.0f} min for {lifetime}-minute tokens renewed 5 minutes ahead, "
        f"i.e. one call per token (goal: at most one per token lifetime)   "
        f"{'ok' if ok_warm else 'MISSED'}"
    )
    print(
        f"callers that waited for Kroger: {result['waited_warm']} on a warm connection "
        f"(goal: 0)   {'ok' if ok_wait else 'MISSED'}; {result['waited_idle']} on an idle "
        f"one (first use, renewed on demand), of {result['hand_outs']} hand-outs"
    )
    print(f"(simulated in {seconds:.0f} s of wall time)")
    return ok_idle and ok_warm and ok_wait


def main() -> int:
    with harness.portal_on_postgres("keep_alive") as (fake, _work):
        clock = Clock(START)
        with mock.patch("django.utils.timezone.now", clock):
            used = seed(fake, clock)
            fake.token_calls.clear()
            started = time.perf_counter()
            result = simulate(fake, clock, used)
            seconds = time.perf_counter() - started
            met = report(result, used, len(fake.token_calls), seconds)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
