"""`make bench`: how fast the service API hands out tokens on this machine.

Run by ``bench/run`` inside ``bin/with-postgres`` (which provides TEST_DATABASE_URL). It migrates
the throwaway database, seeds an OAuth 2.0 client, two connections and a service key against
the fake Kroger (tests/fakes, https with a throwaway CA), serves the portal with gunicorn under
production settings (DEBUG off; plain HTTP on loopback behind a pretend TLS proxy header), and
prints:

- requests/s and p50/p99 latency of the token endpoint for a valid token, beside a bench-only
  view that reads one row by primary key and returns JSON (the ceiling of this stack);
- the SQL queries one token request makes;
- the time and the number of calls to Kroger's token endpoint for 200 concurrent token requests
  to a connection whose token has just expired (one call is expected).

The load generator is a pool of Python threads with keep-alive connections on the same machine,
so it competes with the server for CPU: the figures are a floor, comparable between runs here.
"""

from __future__ import annotations

import http.client
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "8"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
RACERS = 200
KROGER_DELAY = 0.15  # seconds the fake Kroger takes to answer a token request
HOST = "localhost"
WORK_DIR = Path(tempfile.mkdtemp(prefix="portal-bench-"))  # gunicorn's log, an empty static root


@dataclass
class Load:
    requests: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def configure(db_url: str, kroger_url: str) -> None:
    from connections_app.crypto import generate_key

    (WORK_DIR / "static").mkdir()

    os.environ.update(
        {
            "PORTAL_SKIP_DOTENV": "1",
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": db_url,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEYS": generate_key("bench"),
            "SITE_URL": f"https://{HOST}",
            "ALLOWED_HOSTS": f"{HOST},127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto: https",
            "KROGER_PRODUCTION_URL": kroger_url,
            "KROGER_CERTIFICATION_URL": kroger_url,
            "LOG_LEVEL": "WARNING",
            # Nothing static is served here; an existing directory keeps WhiteNoise quiet.
            "STATIC_ROOT": str(WORK_DIR / "static"),
        }
    )


def seed(fake: Any) -> tuple[Any, Any, str]:
    from bench.harness import registered_client
    from connections_app.models import Connection, Scope, ServiceKey

    client = registered_client(fake, "Bench app", "bench-app")
    made = []
    for name in ("Valid token", "Just expired"):
        connection = Connection.objects.create(name=name, environment="production", client=client)
        connection.scopes.set(Scope.objects.filter(name="product.compact"))
        access, refresh = fake.issue_tokens("bench-app", ["product.compact"])
        connection.store_tokens(
            access_token=access,
            refresh_token=refresh,
            expires_in=1800,
            granted_scopes="product.compact",
        )
        made.append(connection)
    _, raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Bench service", all_connections=True
    )
    return made[0], made[1], raw


def count_queries(path: str, raw: str) -> int:
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
    with CaptureQueriesContext(db) as queries:
        response = client.get(path, headers={"Authorization": f"Bearer {raw}"})
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
    return len(queries)


def start_gunicorn(
    port: int, log: Path, app: str = "connections_app.wsgi:application"
) -> subprocess.Popen[bytes]:
    workers = 2 * (os.cpu_count() or 1)
    command = [
        str(ROOT / ".venv/bin/gunicorn"),
        app,
        f"--bind=127.0.0.1:{port}",
        "--worker-class=gthread",
        f"--workers={workers}",
        "--threads=4",
        "--access-logfile=-",
        '--access-logformat=%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms',
    ]
    handle = log.open("wb")
    process = subprocess.Popen(command, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)  # noqa: S603
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited: see {log}\n{log.read_text()[-2000:]}")
        try:
            status, _ = get(port, "/healthz", {})
            if status == 200:
                print(f"gunicorn: {workers} workers x 4 threads (gthread) on 127.0.0.1:{port}")
                return process
        except OSError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise SystemExit(f"gunicorn did not answer /healthz within 30 s: see {log}")


def headers_for(raw: str) -> dict[str, str]:
    return {"Host": HOST, "X-Forwarded-Proto": "https", "Authorization": f"Bearer {raw}"}


def get(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Host": HOST, **headers})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


Connect = Callable[[], http.client.HTTPConnection]


def load_with(
    connect: Connect,
    path: str,
    headers: dict[str, str],
    seconds: float,
    clients: int = CONCURRENCY,
) -> Load:
    """``clients`` threads (CONCURRENCY unless told), each with one keep-alive connection
    from ``connect``, for ``seconds``."""
    results: list[tuple[list[float], int]] = []
    lock = threading.Lock()
    start = time.perf_counter()
    stop = start + seconds

    def worker() -> None:
        latencies: list[float] = []
        errors = 0
        conn = connect()
        while time.perf_counter() < stop:
            began = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = connect()
                ok = False
            latencies.append(time.perf_counter() - began)
            errors += not ok
        conn.close()
        with lock:
            results.append((latencies, errors))

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    latencies = [value for lat, _ in results for value in lat]
    return Load(len(latencies), sum(e for _, e in results), elapsed, latencies)


def load(port: int, path: str, headers: dict[str, str], seconds: float) -> Load:
    """``load_with`` plain HTTP connections to the portal on ``port``."""
    return load_with(
        lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=30), path, headers, seconds
    )


def race(port: int, path: str, headers: dict[str, str]) -> tuple[float, Counter[int], int]:
    """RACERS requests released at once; returns (seconds, statuses, distinct tokens)."""
    import json

    barrier = threading.Barrier(RACERS + 1)
    statuses: Counter[int] = Counter()
    tokens: set[str] = set()
    lock = threading.Lock()
    finished: list[float] = []

    def racer() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.connect()
        barrier.wait()
        try:
            conn.request("GET", path, headers=headers)
            response = conn.getresponse()
            body = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            status, body = 0, b""
        done = time.perf_counter()
        with lock:
            statuses[status] += 1
            finished.append(done)
            if status == 200:
                tokens.add(json.loads(body)["access_token"])
        conn.close()

    threads = [threading.Thread(target=racer) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    barrier.wait()
    released = time.perf_counter()
    for thread in threads:
        thread.join()
    return max(finished) - released, statuses, len(tokens)


def row(label: str, result: Load) -> str:
    return (
        f"  {label:<34} {result.rate:>9.0f} {result.percentile(50):>9.1f} "
        f"{result.percentile(99):>9.1f} {result.errors:>7}"
    )


def main() -> int:
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        print("bench needs a PostgreSQL database: run it through bench/run", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tests.fakes import tls
    from tests.fakes.fake_kroger import FakeKroger

    # The fake Kroger serves https; this process and gunicorn (which inherits the environment)
    # trust its throwaway CA through REQUESTS_CA_BUNDLE.
    tls.trust_test_ca(WORK_DIR)
    fake = FakeKroger().start()
    fake.token_delay = KROGER_DELAY
    configure(db_url, fake.url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections
    from django.utils import timezone

    from connections_app.models import Connection

    began = time.monotonic()
    call_command("migrate", verbosity=0)
    valid, expiring, raw = seed(fake)
    token_path = f"/api/v1/connections/{valid.code}/token"
    race_path = f"/api/v1/connections/{expiring.code}/token"
    ceiling_path = f"/api/bench/ceiling/{valid.pk}"  # the API's middleware, as the endpoint

    first_use = count_queries(token_path, raw)
    steady = count_queries(token_path, raw)
    connections.close_all()

    log = WORK_DIR / "gunicorn.log"
    port = free_port()
    server = start_gunicorn(port, log)
    try:
        headers = headers_for(raw)
        status, body = get(port, token_path, headers)
        if status != 200:
            raise SystemExit(f"token endpoint answered {status}: {body[:300]!r}")
        measured: dict[str, Load] = {}
        for label, path in (("token endpoint (valid token)", token_path),):
            load(port, path, headers, 1.0)  # warm up connections and caches
            measured[label] = load(port, path, headers, SECONDS)
        load(port, ceiling_path, headers, 1.0)
        measured["ceiling: one row by pk as JSON"] = load(port, ceiling_path, headers, SECONDS)

        def expire() -> None:
            Connection.objects.filter(pk=expiring.pk).update(
                token_expires_at=timezone.now() - timedelta(seconds=1)
            )
            connections.close_all()

        expire()
        calls_before = len(fake.token_calls_for("refresh_token"))
        seconds, statuses, distinct = race(port, race_path, headers)
        kroger_calls = len(fake.token_calls_for("refresh_token")) - calls_before

        expire()
        refresh_queries = count_queries(race_path, raw)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        fake.stop()

    show(
        measured,
        first_use=first_use,
        steady=steady,
        refresh_queries=refresh_queries,
        race_result=(seconds, statuses, distinct, kroger_calls),
        total=time.monotonic() - began,
        version=_versions(connections),
    )
    ok = kroger_calls == 1 and statuses == Counter({200: RACERS}) and distinct == 1
    if ok:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    else:
        print(f"Unexpected results: the gunicorn log is in {log}")
    return 0 if ok else 1


def _versions(connections: Any) -> str:
    with connections["default"].cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def show(
    measured: dict[str, Load],
    *,
    first_use: int,
    steady: int,
    refresh_queries: int,
    race_result: tuple[float, Counter[int], int, int],
    total: float,
    version: str,
) -> None:
    seconds, statuses, distinct, kroger_calls = race_result
    out: Callable[[str], None] = print
    out("")
    python = platform.python_version()
    out(f"Machine: {os.cpu_count()} CPU(s), {cpu_model()}; {version}; Python {python}")
    load_1, load_5, _ = os.getloadavg()
    out(f"Load average at the end: {load_1:.1f} (1 min), {load_5:.1f} (5 min): other work skews it")
    out(
        f"Load: {CONCURRENCY} client threads with keep-alive on the same machine, "
        f"{SECONDS:.0f} s per endpoint, loopback"
    )
    out("")
    out(f"  {'':<34} {'req/s':>9} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    for label, result in measured.items():
        out(row(label, result))
    token, ceiling = (
        measured["token endpoint (valid token)"],
        measured["ceiling: one row by pk as JSON"],
    )
    out(f"  token endpoint / ceiling: {token.rate / ceiling.rate:.0%} of the requests per second")
    out("")
    out(
        f"SQL queries per token request: {steady} "
        f"({first_use} when it also records the key's last use, at most once a minute; "
        f"{refresh_queries} when it refreshes the token)"
    )
    answers = ", ".join(
        f"{count} x {status or 'failed'}" for status, count in sorted(statuses.items())
    )
    out(
        f"{RACERS} concurrent token requests, token just expired: {seconds:.2f} s; "
        f"{kroger_calls} call(s) to Kroger's token endpoint (expected 1); answers: {answers}; "
        f"{distinct} distinct token(s); the fake Kroger takes {KROGER_DELAY * 1000:.0f} ms"
    )
    out(f"Total bench time: {total:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
