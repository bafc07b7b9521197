"""AuthorizationAttempt: a state is claimed once, even by callbacks arriving at the same time."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection as db_connection

from connections_app import consent
from connections_app.consent import AuthorizationRefused
from connections_app.models import AuthorizationAttempt, Connection


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_callbacks_claim_a_state_once(owner: Any, connection: Connection) -> None:
    _, state = consent.start_attempt(
        connection=connection, user=owner, redirect_uri="https://portal.test/oauth/callback/"
    )
    callers = 6
    barrier = threading.Barrier(callers)
    results: list[str] = []
    lock = threading.Lock()

    def claim() -> None:
        try:
            barrier.wait()
            consent.claim(state, owner)
            outcome = "claimed"
        except AuthorizationRefused as refused:
            outcome = refused.message
        finally:
            db_connection.close()  # each thread has its own connection
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results.count("claimed") == 1
    assert all("already used" in result for result in results if result != "claimed")


@pytest.mark.django_db
def test_only_the_hash_of_the_state_is_kept(owner: Any, connection: Connection) -> None:
    attempt, state = consent.start_attempt(
        connection=connection, user=owner, redirect_uri="https://portal.test/oauth/callback/"
    )
    assert state not in attempt.state_hash
    assert attempt.state_hash == AuthorizationAttempt.hash_state(state)
    assert consent.claim(state, owner).pk == attempt.pk
