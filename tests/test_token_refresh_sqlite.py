"""On SQLite (what `make run` serves), concurrent callers also cause one refresh.

SQLite ignores SELECT ... FOR UPDATE; the portal opens every transaction with BEGIN IMMEDIATE
instead. The test database pytest-django makes for SQLite lives in memory, where connections
share one cache and its locks do not wait, so this test migrates a database file of its own and
asks from several processes (each with several threads), as a served portal would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.fakes.fake_kroger import FakeKroger
from tests.keepalive import ROOT, ask_in_processes, child_env

SEED = """
import os
from datetime import timedelta
import django
django.setup()
from django.utils import timezone
from connections_app.models import Connection, OAuthClient, Scope

client = OAuthClient.objects.create(
    name="Shopping app", environment="production", grant_type="authorization_code",
    client_id=os.environ["SEED_CLIENT_ID"], client_secret=os.environ["SEED_CLIENT_SECRET"],
)
connection = Connection.objects.create(name="Store cart", environment="production", client=client)
connection.scopes.set(Scope.objects.filter(name="product.compact"))
connection.store_tokens(
    access_token=os.environ["SEED_ACCESS"], expires_in=1800,
    refresh_token=os.environ["SEED_REFRESH"],
)
connection.token_expires_at = timezone.now() - timedelta(minutes=1)
connection.save()
print(connection.pk)
"""

READ = """
import django
django.setup()
from connections_app.models import Connection
print(Connection.objects.get().access_token)
"""


def run(script: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, *script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def test_callers_in_several_processes_cause_one_refresh(
    tmp_path: Path, fake_kroger: FakeKroger
) -> None:
    url = f"sqlite:///{tmp_path / 'portal.sqlite3'}"
    env = child_env(url, fake_kroger)
    run(["manage.py", "migrate", "--noinput"], env)
    fake_kroger.register_client("shopping-app-1234", "s3cret-value-123", {"product.compact"})
    access, refresh = fake_kroger.issue_tokens("shopping-app-1234", ["product.compact"])
    seed_env = {
        **env,
        "SEED_CLIENT_ID": "shopping-app-1234",
        "SEED_CLIENT_SECRET": "s3cret-value-123",
        "SEED_ACCESS": access,
        "SEED_REFRESH": refresh,
    }
    pk = int(run(["-c", SEED], seed_env))
    fake_kroger.token_delay = 0.5

    results = ask_in_processes(url, fake_kroger, pk, processes=3, threads=4)

    assert len(results) == 12
    stored = run(["-c", READ], env)
    assert set(results) == {stored}
    assert stored != access
    assert len(fake_kroger.token_calls) == 1
    assert os.path.exists(tmp_path / "portal.sqlite3")
