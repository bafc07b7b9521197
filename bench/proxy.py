"""`make bench`, the proxy: what the portal adds to a call to Kroger, and where the token
endpoint's time goes.

Run by ``bench/run`` after ``bench.benchmark``, on the same throwaway PostgreSQL. It serves the
portal with gunicorn (as ``bench.benchmark`` does) in front of the fake Kroger over https, and
measures in one run, with the same load generator:

- the token endpoint (valid token), the proxy (``GET products`` through the portal: key,
  budget, token, the call to Kroger, the usage count) and the fake Kroger called directly with
  the same token (keep-alive https). The portal's added latency is proxy minus direct. These
  three run again with one client at a time, where p50 is the time to answer one request
  rather than mostly time spent queueing for the two cores;
- the ceiling view (one row by pk as JSON) through the API's middleware, which is what the
  token endpoint runs and is compared with, and through the pages' middleware;
- the anatomy of the token endpoint as it was built before, as bench-only views that each
  add one step, one ORM query each, to the pages' ceiling (see ``bench/anatomy.py``): the
  service key, the connection, the token, the hand-out count (and, for comparison, the audit
  row per hand-out it replaced);
- the SQL queries of one proxied call and of one token hand-out.

The fake Kroger runs in this process, so it shares the load generator's CPU: "direct" is
measured under the same conditions as the proxy.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import benchmark as base
from bench.benchmark import CONCURRENCY, HOST, SECONDS, Connect, Load, load_with
from bench.harness import registered_client

ROOT = Path(__file__).resolve().parent.parent

TICK = os.sysconf("SC_CLK_TCK")
HANDOUT = "token endpoint (valid token)"
PROXY = "proxy: GET products via the portal"
DIRECT = "direct: GET products at the fake"
CEILING = "ceiling: one row by pk as JSON"
PAGES_CEILING = "ceiling, the pages' middleware"


def _processes() -> list[tuple[int, int, str, float]]:
    """(pid, parent pid, command, CPU seconds used) of every process on the machine."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        # utime + stime, and cutime + cstime: the CPU of its children that have exited (a
        # PostgreSQL backend ends with its connection, and its time must still count).
        cpu = sum(int(value) for value in fields[11:15]) / TICK
        found.append((int(entry.name), int(fields[1]), command, cpu))
    return found


def server_cpu(gunicorn_pid: int, pg_port: str) -> float:
    """CPU seconds used so far by the portal's side: gunicorn's processes and this bench's
    PostgreSQL server (its postmaster and backends). Other work on the machine slows the
    requests down but does not add to this, so CPU per request stays comparable when the
    machine is busy, unlike requests/s."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, parent, _, _ in processes:
        children.setdefault(parent, []).append(pid)
    roots = [gunicorn_pid] + [
        pid
        for pid, _, command, _ in processes
        if "postgres" in command and f"-p {pg_port}" in command
    ]
    wanted: set[int] = set()
    while roots:
        pid = roots.pop()
        if pid not in wanted:
            wanted.add(pid)
            roots.extend(children.get(pid, []))
    return sum(cpu for pid, _, _, cpu in processes if pid in wanted)


def seed(fake: Any) -> tuple[Any, str]:
    from connections_app.models import Connection, Scope, ServiceKey

    # A Partner API app: no daily limits, so the bench never spends its budget (every call is
    # still counted).
    client = registered_client(fake, "Proxy bench app", "proxy-bench-app", partner_api=True)
    connection = Connection.objects.create(
        name="Proxy bench", environment="production", client=client
    )
    connection.scopes.set(Scope.objects.filter(name="product.compact"))
    access, refresh = fake.issue_tokens("proxy-bench-app", ["product.compact"])
    connection.store_tokens(
        access_token=access,
        refresh_token=refresh,
        expires_in=24 * 3600,  # valid for the whole run: no renewal is measured here
        granted_scopes="product.compact",
    )
    _, raw = ServiceKey.create_key(
        name="Proxy bench service", connections=[connection], may_fetch_tokens=True
    )
    return connection, raw


def queries_of(path: str, raw: str) -> int:
    from django.db import connection as db
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST=HOST, HTTP_X_FORWARDED_PROTO="https")
    with CaptureQueriesContext(db) as queries:
        response = client.get(path, headers={"Authorization": f"Bearer {raw}"})
    if response.status_code != 200:
        raise SystemExit(f"{path} answered {response.status_code}: {response.content[:300]!r}")
    return len(queries)


def main() -> int:
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        print("bench needs a PostgreSQL database: run it through bench/run", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from tests.fakes import tls
    from tests.fakes.fake_kroger import FakeKroger

    tls.trust_test_ca(base.WORK_DIR)
    fake = FakeKroger().start()
    base.configure(db_url, fake.url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    began = time.monotonic()
    call_command("migrate", verbosity=0)
    connection, raw = seed(fake)
    code, pk = connection.code, connection.pk
    kroger = urlsplit(fake.url)
    token_path = f"/api/v1/connections/{code}/token"
    proxy_path = f"/api/v1/connections/{code}/kroger/products?filter.term=milk"
    direct_path = f"{kroger.path}products?filter.term=milk"
    queries_of(proxy_path, raw)  # the first call of an hour also inserts the hour's row
    proxy_queries = queries_of(proxy_path, raw)
    queries_of(token_path, raw)
    token_queries = queries_of(token_path, raw)
    access_token = type(connection).objects.get(pk=pk).access_token
    connections.close_all()

    context = ssl.create_default_context(cafile=os.environ["REQUESTS_CA_BUNDLE"])
    port = base.free_port()
    server = base.start_gunicorn(
        port, base.WORK_DIR / "gunicorn-proxy.log", "bench.wsgi:application"
    )

    def portal() -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def direct() -> http.client.HTTPConnection:
        host, kport = kroger.hostname or "127.0.0.1", kroger.port or 443
        return http.client.HTTPSConnection(host, kport, timeout=30, context=context)

    headers = base.headers_for(raw)
    direct_headers = {
        "Host": kroger.netloc,
        "Accept": "application/json",
        "Authorization": f"Bearer {access_token}",
    }
    scenarios: list[tuple[str, Connect, str, dict[str, str]]] = [
        (HANDOUT, portal, token_path, headers),
        (PROXY, portal, proxy_path, headers),
        (DIRECT, direct, direct_path, direct_headers),
        (CEILING, portal, f"/api/bench/ceiling/{pk}", headers),
        (PAGES_CEILING, portal, f"/bench/ceiling/{pk}", headers),
        ("  + service key (hash lookup)", portal, f"/bench/anatomy/key/{code}", headers),
        ("  + connection scoped to the key", portal, f"/bench/anatomy/connection/{code}", headers),
        ("  + its token (decrypted)", portal, f"/bench/anatomy/token/{code}", headers),
        ("  + hand-out counter", portal, f"/bench/anatomy/counted/{code}", headers),
        ("  (+ audit row per hand-out, before)", portal, f"/bench/anatomy/audited/{code}", headers),
    ]
    measured: dict[str, Load] = {}
    alone: dict[str, Load] = {}
    cpu_ms: dict[str, float] = {}
    pg_port = str(urlsplit(db_url).port)
    try:
        for label, connect, path, with_headers in scenarios:
            status, body = _probe(connect, path, with_headers)
            if status != 200:
                raise SystemExit(f"{label}: {path} answered {status}: {body[:300]!r}")
            load_with(connect, path, with_headers, 1.0)  # warm up connections and caches
            before = server_cpu(server.pid, pg_port)
            measured[label] = result = load_with(connect, path, with_headers, SECONDS)
            cpu_ms[label] = (server_cpu(server.pid, pg_port) - before) / result.requests * 1000
        # Latency without queueing: one request at a time, so p50 is the time to answer one.
        for label, connect, path, with_headers in scenarios[:3]:
            load_with(connect, path, with_headers, 1.0, clients=1)
            alone[label] = load_with(connect, path, with_headers, SECONDS, clients=1)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except Exception:
            server.kill()
        fake.stop()
    show(
        measured,
        alone,
        cpu_ms,
        proxy_queries=proxy_queries,
        token_queries=token_queries,
        total=time.monotonic() - began,
    )
    return 0 if not any(result.errors for result in measured.values()) else 1


def _probe(connect: Connect, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = connect()
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def show(
    measured: dict[str, Load],
    alone: dict[str, Load],
    cpu_ms: dict[str, float],
    *,
    proxy_queries: int,
    token_queries: int,
    total: float,
) -> None:
    print("")
    load_1, load_5, _ = os.getloadavg()
    print(f"Proxy and token endpoint: {CONCURRENCY} client threads, {SECONDS:.0f} s each, loopback")
    print(f"Load average at the end: {load_1:.1f} (1 min), {load_5:.1f} (5 min)")
    print("")
    print(f"  {'':<38} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'CPU ms':>7}")
    for label, result in measured.items():
        print(
            f"  {label:<38} {result.rate:>7.0f} {result.percentile(50):>8.1f} "
            f"{result.percentile(99):>8.1f} {result.errors:>6} {cpu_ms[label]:>7.2f}"
        )
    print(
        "  (CPU ms: CPU time gunicorn and PostgreSQL spent per request; the fake Kroger runs in "
        "the bench's own process and is not included)"
    )
    print("")
    print(f"The proxy's goal, with {CONCURRENCY} clients at once and with one at a time:")
    for title, loads in ((f"{CONCURRENCY} clients", measured), ("1 client ", alone)):
        hand_out, proxied, called = (loads[k].percentile(50) for k in (HANDOUT, PROXY, DIRECT))
        added = proxied - called
        goal = "met" if added <= hand_out else "NOT met"
        print(
            f"  {title}: p50 token {hand_out:.1f}, proxy {proxied:.1f}, direct {called:.1f} ms; "
            f"added latency (proxy - direct) {added:.1f} ms against the token endpoint's "
            f"{hand_out:.1f} ms: goal {goal}"
        )
    print(
        "  (the same comparison as proxy - token against direct: what the proxy adds to a token "
        "hand-out against the call to Kroger itself, made by a bare client)"
    )
    token, ceiling = measured[HANDOUT], measured[CEILING]
    token_cpu, ceiling_cpu = cpu_ms[HANDOUT], cpu_ms[CEILING]
    print(
        f"Token endpoint / ceiling: {token.rate / ceiling.rate:.0%} of the requests per second, "
        f"{ceiling_cpu / token_cpu:.0%} by CPU per request"
    )
    print(
        f"Portal's CPU per proxied call: {cpu_ms[PROXY]:.2f} ms; per token hand-out: "
        f"{token_cpu:.2f} ms; per ceiling request: {ceiling_cpu:.2f} ms"
    )
    pages = measured[PAGES_CEILING]
    print(
        f"The API's middleware against the pages': ceiling {ceiling.rate:.0f} against "
        f"{pages.rate:.0f} req/s, {ceiling_cpu:.2f} against {cpu_ms[PAGES_CEILING]:.2f} CPU ms"
    )
    print(f"SQL queries per proxied call: {proxy_queries}; per token hand-out: {token_queries}")
    print(f"Total proxy bench time: {total:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
