"""Helpers for the token-lifecycle tests: connections authorized at the fake Kroger."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.utils import timezone

from connections_app.models import (
    Connection,
    ConnectionStatus,
    Environment,
    GrantType,
    OAuthClient,
    Scope,
)
from tests.fakes.fake_kroger import FakeKroger

ALL_SCOPES = {"product.compact", "cart.basic:write", "profile.compact"}


def authorize(
    connection: Connection, fake: FakeKroger, *, valid_for: timedelta = timedelta(minutes=30)
) -> Connection:
    """Give the connection real tokens from the fake, as if consent had just happened;
    ``valid_for`` sets how long the portal believes its access token lasts (negative: expired)."""
    client = connection.client
    fake.register_client(client.client_id, client.client_secret, ALL_SCOPES)
    scopes = sorted(scope.name for scope in connection.scopes.all())
    access, refresh = fake.issue_tokens(client.client_id, scopes)
    if client.grant_type == GrantType.CLIENT_CREDENTIALS:
        refresh = ""
    connection.store_tokens(
        access_token=access, expires_in=1800, refresh_token=refresh, granted_scopes=" ".join(scopes)
    )
    connection.authorized_at = timezone.now() - timedelta(hours=1)
    connection.token_expires_at = timezone.now() + valid_for
    connection.save()
    return connection


def cc_connection(cc_client: OAuthClient, owner: Any, name: str = "Catalogue") -> Connection:
    connection = Connection.objects.create(
        name=name, environment=Environment.CERTIFICATION, client=cc_client, created_by=owner
    )
    connection.scopes.set(Scope.objects.filter(name="product.compact"))
    return connection


def expire(connection: Connection) -> Connection:
    connection.token_expires_at = timezone.now() - timedelta(minutes=1)
    connection.save()
    return connection


def reloaded(connection: Connection) -> Connection:
    return Connection.objects.select_related("client").get(pk=connection.pk)


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


def make_offline(connection: Connection, reason: str) -> None:
    """Put the connection Offline with ``reason``, as a failed refresh or test would."""
    connection.set_state(status=ConnectionStatus.OFFLINE, status_reason=reason[:255])
