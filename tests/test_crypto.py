from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection as db

from connections_app.crypto import (
    DecryptionError,
    KeyConfigError,
    KeyRing,
    generate_key,
    key_id_of,
    parse_keys,
)
from connections_app.models import Connection, OAuthClient
from tests.conftest import CLIENT_SECRET

KEY_A = generate_key("A")
KEY_B = generate_key("B")


def ring(*entries: str) -> KeyRing:
    return KeyRing(parse_keys(",".join(entries)))


def test_it_round_trips_a_value_under_the_first_key() -> None:
    token = ring(KEY_A, KEY_B).encrypt("s3cret", "ctx")
    assert token.startswith("v1:A:")
    assert "s3cret" not in token
    assert ring(KEY_A).decrypt(token, "ctx") == "s3cret"


def test_each_encryption_uses_a_fresh_nonce() -> None:
    r = ring(KEY_A)
    assert r.encrypt("same", "ctx") != r.encrypt("same", "ctx")


def test_it_names_a_missing_key_id() -> None:
    token = ring(KEY_A).encrypt("s3cret", "ctx")
    with pytest.raises(DecryptionError, match="key 'A', which is not in ENCRYPTION_KEYS"):
        ring(KEY_B).decrypt(token, "ctx")


def test_a_wrong_key_with_the_same_id_fails_loudly() -> None:
    token = ring(KEY_A).encrypt("s3cret", "ctx")
    with pytest.raises(DecryptionError, match="does not decrypt with key 'A'"):
        ring(generate_key("A")).decrypt(token, "ctx")


def test_a_value_bound_to_another_context_does_not_decrypt() -> None:
    token = ring(KEY_A).encrypt("s3cret", "row-1")
    with pytest.raises(DecryptionError):
        ring(KEY_A).decrypt(token, "row-2")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "empty"),
        ("nokeyid", "must look like"),
        ("bad id!:AAAA", "must look like"),
        ("A:not base64!!", "not valid base64"),
        ("A:AAAA", "must be 32 bytes"),
        (f"{KEY_A},{KEY_A}", "twice"),
    ],
)
def test_it_refuses_malformed_key_lists(value: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=message):
        parse_keys(value)


@pytest.mark.django_db
def test_the_database_holds_ciphertext_bound_to_its_row(oauth_client: OAuthClient) -> None:
    with db.cursor() as cursor:
        cursor.execute("SELECT client_secret FROM connections_app_oauthclient")
        (stored,) = cursor.fetchone()
    assert stored.startswith("v1:test1:")
    assert CLIENT_SECRET not in stored
    assert OAuthClient.objects.get().client_secret == CLIENT_SECRET


@pytest.mark.django_db
def test_a_ciphertext_swapped_into_another_row_fails_to_decrypt(
    oauth_client: OAuthClient, cc_client: OAuthClient
) -> None:
    with db.cursor() as cursor:
        cursor.execute(
            "UPDATE connections_app_oauthclient SET client_secret = "
            "(SELECT client_secret FROM connections_app_oauthclient WHERE id = %s) WHERE id = %s",
            [oauth_client.pk, cc_client.pk],
        )
    moved = OAuthClient.objects.get(pk=cc_client.pk)
    with pytest.raises(DecryptionError, match="copied from another record"):
        _ = moved.client_secret


@pytest.mark.django_db
def test_a_ciphertext_swapped_into_another_field_fails_to_decrypt(connection: Connection) -> None:
    connection.store_tokens(access_token="access-1", refresh_token="refresh-1", expires_in=1800)
    with db.cursor() as cursor:
        cursor.execute("UPDATE connections_app_connection SET access_token = refresh_token")
    with pytest.raises(DecryptionError):
        _ = Connection.objects.get().access_token


@pytest.mark.django_db
def test_plaintext_cannot_be_written_with_a_queryset_update(oauth_client: OAuthClient) -> None:
    with pytest.raises(TypeError, match="encrypted"):
        OAuthClient.objects.update(client_secret="plain")


@pytest.mark.django_db
def test_rotation_lets_the_old_key_be_removed(settings, connection: Connection) -> None:
    settings.ENCRYPTION_KEYS = KEY_A
    client = connection.client
    client.client_secret = CLIENT_SECRET
    client.save()
    connection.store_tokens(access_token="access-A", refresh_token="refresh-A", expires_in=1800)

    settings.ENCRYPTION_KEYS = f"{KEY_B},{KEY_A}"
    dry = io.StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=dry)
    assert "Would re-encrypt 2 record(s)" in dry.getvalue()
    assert key_id_of(OAuthClient.objects.values_list("client_secret", flat=True).get()) == "A"

    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "Before: A: 3" in out.getvalue()
    assert "After: B: 3" in out.getvalue()

    settings.ENCRYPTION_KEYS = KEY_B
    assert OAuthClient.objects.get().client_secret == CLIENT_SECRET
    stored = Connection.objects.get()
    assert (stored.access_token, stored.refresh_token) == ("access-A", "refresh-A")


@pytest.mark.django_db
def test_rotation_without_the_old_key_changes_nothing(settings, oauth_client: OAuthClient) -> None:
    settings.ENCRYPTION_KEYS = KEY_B
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match=r"Nothing was changed: .*key 'test1'"):
        call_command("rotate_encryption_keys", stdout=io.StringIO())


def test_generate_encryption_key_prints_a_usable_entry() -> None:
    out = io.StringIO()
    call_command("generate_encryption_key", "--id", "k2", stdout=out)
    (key,) = parse_keys(out.getvalue().strip())
    assert key.key_id == "k2"
