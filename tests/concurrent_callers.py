"""Callers of a connection's token in other processes, released together: what a served portal
with several workers does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.fake_kroger import FakeKroger

# A process asking for the token from several threads at one moment; prints the answers.
ASKER = """
import json, sys, threading
import django
django.setup()
from django.db import connections
from connections_app.models import Connection
from connections_app import lifecycle

pk, count = int(sys.argv[1]), int(sys.argv[2])
results = []
go = threading.Event()

def ask():
    try:
        go.wait()
        results.append(lifecycle.get_access_token(Connection.objects.get(pk=pk)).access_token)
    except Exception as exc:
        results.append(f"error: {type(exc).__name__}: {exc}")
    finally:
        connections.close_all()

threads = [threading.Thread(target=ask) for _ in range(count)]
for t in threads: t.start()
print("ready", flush=True)
sys.stdin.readline()
go.set()
for t in threads: t.join()
print(json.dumps(results))
"""

ROOT = Path(__file__).resolve().parent.parent


def child_env(database_url: str, fake: FakeKroger) -> dict[str, str]:
    """The environment of a portal process using this database and the fake Kroger."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": database_url,
        "KROGER_PRODUCTION_URL": fake.url,
        "KROGER_CERTIFICATION_URL": fake.url,
    }


def ask_in_processes(
    database_url: str, fake: FakeKroger, pk: int, *, processes: int, threads: int
) -> list[str]:
    """Ask for connection ``pk``'s token from ``threads`` threads in each of ``processes``
    processes, released together once all are ready; the tokens (or errors) they got."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", ASKER, str(pk), str(threads)],
            cwd=ROOT,
            env=child_env(database_url, fake),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    results: list[str] = []
    for child in children:
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        results += json.loads(out.strip().splitlines()[-1])
    return results
