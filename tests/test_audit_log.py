"""The audit log page and its CSV, for administrators only, and the sign-in events in it."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections_app.models import AuditAction, AuditEvent, Connection
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


def events_for(connection: Connection, actor: Any, count: int) -> None:
    AuditEvent.objects.bulk_create(
        AuditEvent(
            action=AuditAction.TESTED,
            actor=actor,
            connection=connection,
            subject=connection.name,
            detail=f"run {n}",
        )
        for n in range(count)
    )


@pytest.mark.parametrize(
    ("who", "status"), [("admin_user", 200), ("owner", 403), ("teammate", 403), ("outsider", 403)]
)
def test_only_administrators_read_the_audit_log(
    client: Any, request: pytest.FixtureRequest, who: str, status: int
) -> None:
    client_for(client, request.getfixturevalue(who))
    assert client.get("/audit/").status_code == status
    assert client.get("/audit/export.csv").status_code == status


def test_signed_out_people_are_sent_to_sign_in(client: Any) -> None:
    assert client.get("/audit/")["Location"].startswith("/accounts/login/")
    assert client.get("/audit/export.csv")["Location"].startswith("/accounts/login/")


def test_the_page_costs_the_same_queries_for_10_and_1000_events(
    client: Any, admin_user: Any, connection: Connection, owner: Any
) -> None:
    client_for(client, admin_user)
    events_for(connection, owner, 10)
    with CaptureQueriesContext(db) as few:
        assert client.get("/audit/").status_code == 200
    events_for(connection, owner, 990)
    with CaptureQueriesContext(db) as many:
        page = client.get("/audit/")
    assert "Page 1 of 20" in page.content.decode()
    assert len(many) == len(few)
    assert client.get("/audit/?page=20").status_code == 200


def test_it_filters_by_person_action_connection_and_date(
    client: Any, admin_user: Any, connection: Connection, owner: Any, teammate: Any
) -> None:
    events_for(connection, owner, 2)
    AuditEvent.record(AuditAction.SIGNED_IN, actor=teammate, subject=teammate.email)
    old = AuditEvent.record(AuditAction.SIGNED_IN, actor=teammate, subject=teammate.email)
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=40))
    client_for(client, admin_user)

    def shown(query: str) -> int:
        return len(client.get(f"/audit/?{query}").context["page"].object_list)

    assert shown(f"person={teammate.email}") == 2
    assert shown("action=signed_in") == 2
    assert shown(f"connection={connection.code}") == 2
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    assert shown(f"person={teammate.email}&since={since}") == 1
    bad = client.get("/audit/?since=2026-05-02&until=2026-05-01")
    assert "“To” must be on or after “From”" in bad.content.decode()


def test_the_csv_has_every_matching_event_and_no_formula(
    client: Any, admin_user: Any, connection: Connection, owner: Any
) -> None:
    events_for(connection, owner, 3)
    AuditEvent.record(AuditAction.SIGNED_IN, actor=owner, subject="=HYPERLINK(1)")
    client_for(client, admin_user)
    response = client.get("/audit/export.csv?action=tested")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["time", "who", "action", "subject", "connection", "detail"]
    assert len(rows) == 4
    assert {row[4] for row in rows[1:]} == {"Store cart"}
    everything = b"".join(client.get("/audit/export.csv").streaming_content).decode()
    assert "'=HYPERLINK(1)" in everything


def test_sign_ins_failures_and_sign_outs_are_recorded_without_what_was_typed(
    client: Any, owner: Any
) -> None:
    client.post("/accounts/login/", {"login": owner.email, "password": "wrong-one"})
    client.post("/accounts/login/", {"login": "my-password-123@x.example", "password": "x"})
    client.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    client.post("/accounts/logout/")
    events = list(AuditEvent.objects.order_by("at", "id").values_list("action", "actor", "detail"))
    assert events == [
        (AuditAction.SIGN_IN_FAILED, owner.pk, "Wrong password"),
        (AuditAction.SIGN_IN_FAILED, None, "No account has that address"),
        (AuditAction.SIGNED_IN, owner.pk, "Signed in with a password"),
        (AuditAction.SIGNED_OUT, owner.pk, ""),
    ]
    stored = repr(list(AuditEvent.objects.values()))
    assert "my-password-123" not in stored and "wrong-one" not in stored


def test_prune_audit_keeps_everything_unless_told(capsys: Any, owner: Any) -> None:
    AuditEvent.record(AuditAction.SIGNED_IN, actor=owner)
    old = AuditEvent.record(AuditAction.SIGNED_IN, actor=owner)
    AuditEvent.objects.filter(pk=old.pk).update(at=timezone.now() - timedelta(days=100))
    call_command("prune_audit")
    assert AuditEvent.objects.count() == 2
    assert "Keeping every audit event" in capsys.readouterr().out

    call_command("prune_audit", "--older-than", "90")
    assert "Deleted 1 audit event(s) older than 90 day(s)" in capsys.readouterr().out
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(action=AuditAction.AUDIT_PRUNED).count() == 1
