"""manage.py run_worker: refreshes in a loop and stops cleanly on SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import threading
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command

from connections_app.models import AuditAction, AuditEvent, Connection, Scope
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger


# Transactional: the worker closes stale database connections between passes, as a
# long-running process must, which a test wrapped in one transaction would not survive.
@pytest.mark.django_db(transaction=True)
def test_sigterm_lets_the_refresh_under_way_finish_then_stops(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1), warm=True)
    second = Connection.objects.create(
        name="Second", environment=connection.environment, client=connection.client
    )
    second.scopes.set(Scope.objects.filter(name="product.compact"))
    authorize(second, fake_kroger, valid_for=timedelta(minutes=2), warm=True)
    fake_kroger.token_delay = 1.0  # SIGTERM arrives while Kroger is answering the first
    handler_before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM))
    out = io.StringIO()

    timer.start()
    call_command("run_worker", "--interval=1", "--concurrency=1", stdout=out)  # returns: exit 0

    assert "SIGTERM: finishing the current work" in out.getvalue()
    refreshed = AuditEvent.objects.filter(action=AuditAction.REFRESHED)
    assert list(refreshed.values_list("connection__name", flat=True)) == ["Store cart"]
    assert len(fake_kroger.token_calls) == 1
    assert reloaded(connection).access_token != connection.access_token
    assert signal.getsignal(signal.SIGTERM) is handler_before


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--interval=200"], "--interval must be at most 180 seconds"),
        (["--concurrency=0"], "--concurrency must be between 1 and 32"),
        (["--interval=0"], "--interval must be at least 1 second"),
    ],
)
def test_it_refuses_settings_that_would_let_tokens_expire(
    arguments: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("run_worker", *arguments)
