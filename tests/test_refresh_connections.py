"""manage.py refresh_connections: one pass of the worker, for cron."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command

from connections_app.models import Connection, Scope
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


def test_it_refreshes_the_due_connections_once_and_exits(
    connection: Connection, fake_kroger: FakeKroger, owner: Any
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=4), warm=True)
    fresh = Connection.objects.create(
        name="Fresh", environment=connection.environment, client=connection.client
    )
    fresh.scopes.set(Scope.objects.filter(name="product.compact"))
    authorize(fresh, fake_kroger, warm=True)
    out = io.StringIO()

    call_command("refresh_connections", "--concurrency=1", stdout=out)

    assert out.getvalue().strip() == "1 connection(s) handled"
    assert reloaded(connection).access_token != connection.access_token
    assert reloaded(fresh).access_token == fresh.access_token
    assert len(fake_kroger.token_calls) == 1


def test_a_warm_token_is_renewed_five_minutes_before_it_expires_and_not_sooner(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=6), warm=True)
    call_command("refresh_connections", "--concurrency=1", stdout=io.StringIO())
    assert fake_kroger.token_calls == []
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=4), warm=True)
    call_command("refresh_connections", "--concurrency=1", stdout=io.StringIO())
    assert len(fake_kroger.token_calls) == 1


def test_an_idle_token_about_to_expire_is_left_to_lapse(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=1))
    out = io.StringIO()
    call_command("refresh_connections", "--concurrency=1", stdout=out)
    assert out.getvalue().strip() == "0 connection(s) handled"
    assert fake_kroger.token_calls == []
