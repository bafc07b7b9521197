"""manage.py create_service_key: creates a key for automation and prints it once."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from connections_app.models import AuditAction, AuditEvent, Connection, ServiceKey

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_service_key", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_it_prints_a_working_key_once_and_stores_only_its_hash(connection: Connection) -> None:
    raw, note = run("Shopping list service", "--connection", "Store cart")
    assert raw.startswith("kcp_")
    assert "\n" not in raw
    assert raw not in note
    key = ServiceKey.objects.get(name="Shopping list service")
    assert ServiceKey.authenticate(raw) == key
    assert raw not in (key.key_hash, key.key_prefix)
    assert list(key.connections.all()) == [connection]
    assert not key.all_connections
    assert key.expires_at is None
    assert "Store cart" in note and key.key_prefix in note


def test_it_accepts_a_connection_by_public_id(connection: Connection) -> None:
    run("By id", "--connection", str(connection.code))
    assert list(ServiceKey.objects.get(name="By id").connections.all()) == [connection]


def test_it_creates_a_key_for_all_connections_with_an_expiry(connection: Connection) -> None:
    run("Everything", "--all", "--expires-in-days", "30")
    key = ServiceKey.objects.get(name="Everything")
    assert key.all_connections
    assert key.expires_at is not None
    assert abs(key.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)


def test_it_records_the_creation_in_the_audit_trail(connection: Connection) -> None:
    raw, _ = run("Audited", "--all")
    event = AuditEvent.objects.get(action=AuditAction.SERVICE_KEY_CREATED)
    assert event.actor_label == "manage.py create_service_key"
    assert event.service_key is not None and event.service_key.name == "Audited"
    assert raw not in event.detail


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["No scope"], "--connection"),
        (["Both", "--all", "--connection", "Store cart"], "not both"),
        (["Unknown", "--connection", "Nope"], "No connection"),
        (["Never", "--all", "--expires-in-days", "0"], "1 or more"),
    ],
)
def test_it_refuses_bad_arguments(connection: Connection, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not ServiceKey.objects.exists()


def test_it_refuses_a_name_in_use(connection: Connection) -> None:
    run("Twice", "--all")
    with pytest.raises(CommandError, match="exists already"):
        run("Twice", "--all")
    assert ServiceKey.objects.count() == 1


@pytest.mark.parametrize(
    ("flags", "token", "proxy", "said"),
    [
        ([], False, True, "allowed the Kroger proxy"),
        (["--proxy"], False, True, "allowed the Kroger proxy"),
        (["--token"], True, False, "allowed access tokens"),
        (["--token", "--proxy"], True, True, "allowed access tokens and the Kroger proxy"),
    ],
)
def test_it_allows_the_token_endpoint_the_proxy_or_both(
    connection: Connection, flags: list[str], token: bool, proxy: bool, said: str
) -> None:
    _, note = run("Allowed", "--connection", "Store cart", *flags)
    key = ServiceKey.objects.get(name="Allowed")
    assert (key.may_fetch_tokens, key.may_proxy) == (token, proxy)
    assert said in note
