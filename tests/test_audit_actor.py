"""The audit trail keeps who acted (name and address) after that person's account is deleted."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import AuditAction, AuditEvent, Connection

pytestmark = pytest.mark.django_db


def test_an_event_keeps_its_actor_after_the_account_is_deleted(
    client: Any, owner: Any, admin_user: Any, connection: Connection
) -> None:
    client.force_login(owner)
    response = client.post(f"/connections/{connection.code}/disconnect/")
    assert response.status_code == 302
    owner.delete()

    event = AuditEvent.objects.get(action=AuditAction.DISCONNECTED)
    assert event.actor is None
    assert event.who == "owner <owner@example.com>"
    client.force_login(admin_user)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert "owner &lt;owner@example.com&gt;" in page
    admin_list = client.get("/admin/connections_app/auditevent/?q=owner@example.com")
    assert "owner &lt;owner@example.com&gt;" in admin_list.content.decode()


def test_a_service_or_command_keeps_its_own_label(connection: Connection) -> None:
    event = AuditEvent.record(
        AuditAction.TOKEN_ISSUED, actor_label="service key Shop", connection=connection
    )
    assert event.who == "service key Shop"


def test_the_migration_labels_events_recorded_before(owner: Any, connection: Connection) -> None:
    from importlib import import_module

    from django.apps import apps

    event = AuditEvent.objects.create(action=AuditAction.TESTED, actor=owner, connection=connection)
    migration = import_module("connections_app.migrations.0007_name_characters_and_actor_labels")
    migration.label_past_events(apps, None)
    owner.delete()
    event.refresh_from_db()
    assert event.who == "owner <owner@example.com>"
