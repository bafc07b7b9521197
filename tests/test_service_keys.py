"""Service keys: generation, hashing, revocation and expiry, the admin, and the administrators'
"Service keys" pages at every access level."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection as db
from django.test import Client
from django.utils import timezone

from connections_app.models import AuditAction, AuditEvent, Connection, ServiceKey
from tests import html_forms
from tests.conftest import client_for

pytestmark = pytest.mark.django_db

KEY_PATTERN = re.compile(r"kcp_[0-9a-f]{8}_[A-Za-z0-9_-]{43}")


def service_key_rows() -> list[tuple[Any, ...]]:
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_app_servicekey")
        return list(cursor.fetchall())


# --- The model -----------------------------------------------------------------------------


def test_a_new_key_is_random_recognisable_and_stored_only_as_a_hash(
    connection: Connection,
) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    _, other_raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Lists 2", connections=[connection]
    )
    assert KEY_PATTERN.fullmatch(raw)
    assert raw != other_raw
    assert raw.startswith(key.key_prefix + "_")
    assert key.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    stored = [str(value) for row in service_key_rows() for value in row]
    secret_part = raw.removeprefix(key.key_prefix + "_")
    assert not any(secret_part in value for value in stored)
    assert not any(ServiceKey.authenticate(value) for value in stored)


def test_authenticate_finds_only_the_exact_active_key(connection: Connection) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    assert ServiceKey.authenticate(raw) == key
    assert ServiceKey.authenticate(raw + "x") is None
    assert ServiceKey.authenticate(raw.upper()) is None
    assert ServiceKey.authenticate(key.key_prefix) is None
    assert ServiceKey.authenticate(key.key_hash) is None
    assert ServiceKey.authenticate("") is None


def test_a_revoked_key_is_refused_and_revoking_twice_records_once(connection: Connection) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    assert key.revoke(actor_label="test") is True
    assert key.revoke(actor_label="test") is False
    assert ServiceKey.authenticate(raw) is None
    assert key.state == "revoked"
    assert AuditEvent.objects.filter(action=AuditAction.SERVICE_KEY_REVOKED).count() == 1


def test_a_key_stops_working_when_it_expires(connection: Connection) -> None:
    soon = timezone.now() + timedelta(minutes=5)
    key, raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Lists", connections=[connection], expires_at=soon
    )
    assert ServiceKey.authenticate(raw) == key
    assert ServiceKey.authenticate(raw, now=soon + timedelta(seconds=1)) is None
    assert key.is_active_at(soon - timedelta(seconds=1))
    assert not key.is_active_at(soon)


def test_may_use_follows_the_chosen_connections(connection: Connection, cc_client: Any) -> None:
    other = Connection.objects.create(name="Other", environment="certification", client=cc_client)
    scoped, _ = ServiceKey.create_key(
        may_fetch_tokens=True, name="Scoped", connections=[connection]
    )
    everything, _ = ServiceKey.create_key(may_fetch_tokens=True, name="All", all_connections=True)
    assert scoped.may_use(connection) and not scoped.may_use(other)
    assert everything.may_use(connection) and everything.may_use(other)


def test_creation_is_audited_without_the_key(connection: Connection, admin_user: Any) -> None:
    key, raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Lists", connections=[connection], created_by=admin_user
    )
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_CREATED)
    assert event.actor == admin_user
    assert event.service_key == key
    assert key.key_prefix in event.detail and "Store cart" in event.detail
    assert raw not in event.detail


# --- The admin ------------------------------------------------------------------------------

ADMIN_ADD = "/admin/connections_app/servicekey/add/"


def test_the_admin_add_form_asks_for_no_hash_or_key(client: Client, admin_user: Any) -> None:
    html = client_for(client, admin_user).get(ADMIN_ADD).content.decode()
    assert 'name="name"' in html
    assert 'name="key_hash"' not in html
    assert 'name="key_prefix"' not in html


def test_creating_a_key_in_the_admin_shows_it_once(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    client_for(client, admin_user)
    response = client.post(
        ADMIN_ADD,
        {
            "name": "From admin",
            "connections": [connection.pk],
            "may_proxy": "on",
            "expires_at_0": "",
        },
    )
    assert response.status_code == 200
    html = response.content.decode()
    found = KEY_PATTERN.search(html)
    assert found is not None
    key = ServiceKey.objects.get(name="From admin")
    assert ServiceKey.authenticate(found.group()) == key
    assert list(key.connections.all()) == [connection]
    assert key.created_by == admin_user
    assert "no-store" in response["Cache-Control"]
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_CREATED)
    assert event.actor == admin_user
    # Nowhere else: not on the change page, the list, nor in a cookie.
    for url in (
        f"/admin/connections_app/servicekey/{key.pk}/change/",
        "/admin/connections_app/servicekey/",
    ):
        assert found.group() not in client.get(url).content.decode()
    assert all(found.group() not in morsel.value for morsel in client.cookies.values())


def test_the_admin_revoke_action_revokes_the_selected_keys(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Doomed", connections=[connection])
    keep, keep_raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Kept", connections=[connection]
    )
    client_for(client, admin_user).post(
        "/admin/connections_app/servicekey/",
        {"action": "revoke_keys", "_selected_action": [key.pk]},
    )
    assert ServiceKey.authenticate(raw) is None
    assert ServiceKey.authenticate(keep_raw) == keep
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_REVOKED)
    assert event.actor == admin_user and event.service_key == key


def test_the_admin_list_filters_by_state(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    ServiceKey.create_key(may_fetch_tokens=True, name="Live one", connections=[connection])
    gone, _ = ServiceKey.create_key(
        may_fetch_tokens=True, name="Gone one", connections=[connection]
    )
    gone.revoke()
    ServiceKey.create_key(
        may_fetch_tokens=True,
        name="Stale one",
        connections=[connection],
        expires_at=timezone.now() - timedelta(days=1),
    )
    client_for(client, admin_user)
    for state, name in [("active", "Live one"), ("revoked", "Gone one"), ("expired", "Stale one")]:
        html = client.get(f"/admin/connections_app/servicekey/?state={state}").content.decode()
        shown = {n for n in ("Live one", "Gone one", "Stale one") if n in html}
        assert shown == {name}, state


# --- The Service keys pages -------------------------------------------------------------------


@pytest.mark.parametrize("who", ["owner", "teammate", "outsider"])
@pytest.mark.parametrize("url", ["/service-keys/", "/service-keys/new/"])
def test_only_administrators_reach_the_service_keys_pages(
    client: Client, request: pytest.FixtureRequest, who: str, url: str
) -> None:
    user = request.getfixturevalue(who)
    assert client_for(client, user).get(url).status_code == 403


def test_a_non_administrator_cannot_create_or_revoke(
    client: Client, owner: Any, connection: Connection
) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    client_for(client, owner)
    response = client.post("/service-keys/new/", {"name": "X", "all_connections": "on"})
    assert response.status_code == 403
    assert client.post(f"/service-keys/{key.code}/revoke/").status_code == 403
    assert ServiceKey.authenticate(raw) == key
    assert not ServiceKey.objects.filter(name="X").exists()


def test_anonymous_visitors_are_sent_to_sign_in(client: Client) -> None:
    response = client.get("/service-keys/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_the_nav_links_to_service_keys_for_administrators_only(
    client: Client, admin_user: Any, owner: Any
) -> None:
    assert 'href="/service-keys/"' in client_for(client, admin_user).get("/").content.decode()
    assert 'href="/service-keys/"' not in client_for(client, owner).get("/").content.decode()


def test_the_list_shows_keys_without_their_value(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    html = client_for(client, admin_user).get("/service-keys/").content.decode()
    assert "Lists" in html and key.key_prefix in html and "Store cart" in html
    assert raw not in html and key.key_hash not in html


def test_an_administrator_creates_a_key_and_sees_it_once(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    client_for(client, admin_user)
    response = client.post(
        "/service-keys/new/",
        {
            "name": "Shopping list service",
            "connections": [connection.pk],
            "may_proxy": "on",
            "expires_in_days": "90",
        },
    )
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    found = KEY_PATTERN.search(response.content.decode())
    assert found is not None
    key = ServiceKey.objects.get(name="Shopping list service")
    assert ServiceKey.authenticate(found.group()) == key
    assert list(key.connections.all()) == [connection]
    assert key.expires_at is not None
    assert abs(key.expires_at - timezone.now() - timedelta(days=90)) < timedelta(minutes=1)
    assert found.group() not in client.get("/service-keys/").content.decode()
    assert AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_CREATED).actor == admin_user


def test_a_key_for_all_connections_is_created_from_the_page(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    client_for(client, admin_user).post(
        "/service-keys/new/", {"name": "Everything", "all_connections": "on", "may_proxy": "on"}
    )
    key = ServiceKey.objects.get(name="Everything")
    assert key.all_connections and key.expires_at is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"name": "Nothing"}, "Choose the connections the key may use, or all."),
        ({"name": "", "all_connections": "on"}, "This field is required."),
        ({"name": "Lists", "all_connections": "on"}, "A service key has this name already."),
        ({"name": "Never", "all_connections": "on", "expires_in_days": "0"}, "greater than"),
    ],
)
def test_the_create_form_explains_what_is_wrong(
    client: Client, admin_user: Any, connection: Connection, data: dict[str, str], error: str
) -> None:
    ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    response = client_for(client, admin_user).post("/service-keys/new/", data)
    assert response.status_code == 200
    assert error in response.content.decode()
    assert ServiceKey.objects.count() == 1


def test_revoking_asks_for_confirmation_then_revokes(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    key, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lists", connections=[connection])
    url = f"/service-keys/{key.code}/revoke/"
    client_for(client, admin_user)
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "Revoke key" in confirm.content.decode()
    assert ServiceKey.authenticate(raw) == key
    response = client.post(url, follow=True)
    assert ServiceKey.authenticate(raw) is None
    assert "is revoked" in response.content.decode()
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_REVOKED)
    assert event.actor == admin_user and event.service_key == key


def test_revoking_an_unknown_key_is_404(client: Client, admin_user: Any) -> None:
    url = "/service-keys/00000000-0000-4000-8000-000000000000/revoke/"
    assert client_for(client, admin_user).post(url).status_code == 404


def test_a_new_key_from_the_page_may_proxy_unless_told_otherwise(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    page = client_for(client, admin_user).get("/service-keys/new/").content.decode()
    boxes = {box["name"]: "checked" in box for box in html_forms.read(page).inputs}
    assert boxes["may_proxy"] is True
    assert boxes["may_fetch_tokens"] is False
    client.post(
        "/service-keys/new/",
        {
            "name": "Both",
            "connections": [connection.pk],
            "may_proxy": "on",
            "may_fetch_tokens": "on",
        },
    )
    both = ServiceKey.objects.get(name="Both")
    assert (both.may_fetch_tokens, both.may_proxy) == (True, True)
    listing = client.get("/service-keys/").content.decode()
    assert "Access tokens and the Kroger proxy" in listing


def test_a_key_that_may_do_nothing_is_refused_with_what_to_fix(
    client: Client, admin_user: Any, connection: Connection
) -> None:
    response = client_for(client, admin_user).post(
        "/service-keys/new/", {"name": "Useless", "connections": [connection.pk]}
    )
    assert response.status_code == 200
    assert "Choose what the key may do" in response.content.decode()
    assert not ServiceKey.objects.filter(name="Useless").exists()


@pytest.mark.django_db(transaction=True)
def test_existing_keys_keep_fetching_tokens_after_the_migration() -> None:
    from django.db import connection as db
    from django.db.migrations.executor import MigrationExecutor

    before = [("connections_app", "0004_audit_role_changes")]
    executor = MigrationExecutor(db)
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    old_apps.get_model("connections_app", "ServiceKey").objects.create(
        name="From before", key_prefix="kcp_0ld", key_hash="0" * 64
    )
    executor = MigrationExecutor(db)
    executor.migrate(executor.loader.graph.leaf_nodes())
    kept = ServiceKey.objects.get(name="From before")
    assert (kept.may_fetch_tokens, kept.may_proxy) == (True, True)
    assert ServiceKey.create_key(name="After")[0].may_fetch_tokens is False
