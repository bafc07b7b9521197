"""The proxy under concurrency, on PostgreSQL (row locks; SQLite serializes writers otherwise,
so a pass there proves nothing): many callers hitting Kroger's 401 together renew the token
once, and two gunicorn servers on one database never spend more than the budget left."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import connections
from django.test import Client
from django.utils import timezone

from connections_app.models import ApiBudget, ApiUsage, Connection, ServiceKey
from tests.concurrent_callers import ROOT, child_env
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def released_together(count: int, work: Any) -> list[Any]:
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = work(index)
        except BaseException as exc:  # reported by the assertions on results
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_twenty_callers_hitting_401_together_cause_one_renewal(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    stale = reloaded(connection).access_token
    _, raw = ServiceKey.create_key(name="Crowd", connections=[connection])
    fake_kroger.expire_access_tokens()  # Kroger rejects the token the portal believes valid
    fake_kroger.token_delay = 0.3  # callers pile up behind the renewal's lock
    url = f"/api/v1/connections/{connection.code}/kroger/products?filter.term=milk"

    answers = released_together(
        20, lambda _: Client().get(url, headers={"Authorization": f"Bearer {raw}"})
    )

    assert [getattr(a, "status_code", a) for a in answers] == [200] * 20
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    fresh = reloaded(connection).access_token
    sent = Counter(r["headers"]["Authorization"] for r in fake_kroger.api_requests)
    assert sent == {f"Bearer {stale}": 20, f"Bearer {fresh}": 20}  # each repeated once


def test_callers_waiting_on_a_renewal_that_fails_get_its_failure_without_trying_again(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    _, raw = ServiceKey.create_key(name="Crowd", connections=[connection])
    fake_kroger.expire_access_tokens()
    fake_kroger.fail_token("500", times=10)  # every renewal attempt would fail
    fake_kroger.token_delay = 0.3  # the others wait on the row lock meanwhile
    url = f"/api/v1/connections/{connection.code}/kroger/products?filter.term=milk"

    answers = released_together(
        10, lambda _: Client().get(url, headers={"Authorization": f"Bearer {raw}"})
    )

    assert [getattr(a, "status_code", a) for a in answers] == [409] * 10
    assert {json.loads(a.content)["error"]["code"] for a in answers} == {"kroger_unavailable"}
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1  # one attempt, not ten
    assert len(fake_kroger.api_requests) == 10  # each call was made once, none repeated


# --- Two gunicorn servers, one budget ---------------------------------------------------------

CALLS = 200
LEFT = 50


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def two_servers(fake_kroger: FakeKroger, tmp_path: Path) -> Iterator[list[int]]:
    db = db_connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = child_env(url, fake_kroger)
    servers = []
    for index in range(2):
        port = _free_port()
        log = (tmp_path / f"gunicorn-{index}.log").open("wb")
        process = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/gunicorn"),
                "connections_app.wsgi:application",
                f"--bind=127.0.0.1:{port}",
                "--worker-class=gthread",
                "--workers=1",
                "--threads=16",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        servers.append((port, process, log))
    try:
        for port, process, _ in servers:
            deadline = time.monotonic() + 60
            while True:
                assert process.poll() is None, "gunicorn exited: see its log in " + str(tmp_path)
                try:
                    if _get(port, "/healthz", {"Host": "127.0.0.1"})[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, "gunicorn did not start"
                time.sleep(0.2)
        yield [port for port, _, _ in servers]
    finally:
        for _, process, log in servers:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def test_two_gunicorn_servers_spend_exactly_the_budget_left(
    connection: Connection, fake_kroger: FakeKroger, two_servers: list[int]
) -> None:
    authorize(connection, fake_kroger)
    _, raw = ServiceKey.create_key(name="Crowd", connections=[connection])
    window_started = timezone.now() - timedelta(hours=20)
    ApiBudget.objects.create(
        client=connection.client,
        api="products",
        daily_limit=10_000,
        calls=10_000 - LEFT,
        window_started_at=window_started,
    )
    fake_kroger.api_delay = 0.05  # calls overlap inside Kroger too
    path = f"/api/v1/connections/{connection.code}/kroger/products?filter.term=milk"
    headers = {"Host": "127.0.0.1", "Authorization": f"Bearer {raw}"}

    started = time.time()
    answers = released_together(
        CALLS, lambda i: (*_get(two_servers[i % 2], path, headers), time.time())
    )

    failures = [a for a in answers if isinstance(a, BaseException)]
    assert not failures, failures[:3]
    statuses = Counter(status for status, _, _, _ in answers)
    assert statuses == {200: LEFT, 429: CALLS - LEFT}
    assert len(fake_kroger.api_requests) == LEFT
    window_ends = window_started + timedelta(hours=24)
    for status, answer_headers, body, finished in answers:
        if status != 429:
            continue
        assert json.loads(body)["error"]["code"] == "budget_exhausted"
        retry_after = int(answer_headers["Retry-After"])
        # Seconds from the answer to the window's end, rounded up.
        assert window_ends.timestamp() - finished <= retry_after
        assert retry_after <= window_ends.timestamp() - started + 1
    spent = ApiBudget.objects.get(client=connection.client, api="products")
    assert spent.calls == 10_000
    assert ApiUsage.objects.get(api="products").count == LEFT
