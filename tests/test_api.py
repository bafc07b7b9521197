"""The service API: service keys fetch the connections they may use and fresh access tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection as connection_db
from django.test import Client
from django.utils import timezone

from connections_app import lifecycle
from connections_app.crypto import generate_key
from connections_app.lifecycle import Actor
from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    Environment,
    OAuthClient,
    ServiceKey,
    TokenHandout,
    TokenUnavailable,
)
from tests.connection_states import authorize, make_offline

pytestmark = pytest.mark.django_db

ACCESS = "access-token-Api7Ks02Lq"
REFRESH = "refresh-token-Api3Nz84Wx"


@pytest.fixture
def authorized(connection: Connection) -> Connection:
    connection.store_tokens(
        access_token=ACCESS,
        refresh_token=REFRESH,
        expires_in=1800,
        granted_scopes="cart.basic:write product.compact",
    )
    return connection


@pytest.fixture
def other_connection(cc_client: OAuthClient) -> Connection:
    other = Connection.objects.create(
        name="Catalogue", environment=Environment.CERTIFICATION, client=cc_client
    )
    other.store_tokens(access_token="other-access-token-Zx91", expires_in=1800)
    return other


@pytest.fixture
def key(authorized: Connection) -> tuple[ServiceKey, str]:
    return ServiceKey.create_key(
        may_fetch_tokens=True, name="Shopping list service", connections=[authorized]
    )


def api(client: Client, url: str, raw: str | None, method: str = "get") -> Any:
    headers = {"Authorization": f"Bearer {raw}"} if raw is not None else {}
    return getattr(client, method)(url, headers=headers)


def token_url(connection: Connection) -> str:
    return f"/api/v1/connections/{connection.code}/token"


def expires_at(connection: Connection) -> str:
    assert connection.token_expires_at is not None
    return connection.token_expires_at.isoformat()


# --- Listing -------------------------------------------------------------------------------


def test_it_lists_only_the_connections_the_key_may_use(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection, other_connection: Any
) -> None:
    response = api(client, "/api/v1/connections/", key[1])
    assert response.status_code == 200
    assert response.json() == {
        "connections": [
            {
                "id": str(authorized.code),
                "name": "Store cart",
                "environment": "production",
                "scopes": ["cart.basic:write", "product.compact"],
                "status": "online",
                "expires_at": expires_at(authorized),
            }
        ]
    }


def test_a_key_for_all_connections_lists_every_connection(
    client: Client, authorized: Connection, other_connection: Connection
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Everything", all_connections=True)
    response = api(client, "/api/v1/connections/", raw)
    assert [c["name"] for c in response.json()["connections"]] == ["Catalogue", "Store cart"]


def test_a_never_authorized_connection_is_listed_without_expiry(
    client: Client, connection: Connection
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Lister", connections=[connection])
    listed = api(client, "/api/v1/connections/", raw).json()["connections"]
    assert listed[0]["status"] == "not_authorized"
    assert listed[0]["expires_at"] is None


# --- Tokens --------------------------------------------------------------------------------


def test_it_hands_out_a_valid_stored_token(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 200
    assert response.json() == {
        "access_token": ACCESS,
        "token_type": "bearer",
        "expires_at": expires_at(authorized),
        "scope": "cart.basic:write product.compact",
        "environment": "production",
        "base_url": "https://api.kroger.com/v1/",
    }


def test_it_counts_tokens_handed_out_per_key_connection_and_hour_without_the_token(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    before = timezone.now()
    api(client, token_url(authorized), key[1])
    api(client, token_url(authorized), key[1])
    handout = TokenHandout.objects.get()
    assert handout.count == 2
    assert handout.service_key == key[0]
    assert handout.connection == authorized
    assert before <= handout.first_at < handout.last_at <= timezone.now()
    assert handout.hour == handout.first_at.replace(minute=0, second=0, microsecond=0)
    assert not AuditEvent.objects.filter(action=AuditAction.TOKEN_ISSUED).exists()
    for value in (str(handout), handout.service_key.name, handout.connection.name):
        assert ACCESS not in value
        assert key[1] not in value


def test_a_new_hour_of_hand_outs_gets_its_own_row_and_old_ones_are_pruned(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection, settings: Any
) -> None:
    settings.USAGE_RETENTION_DAYS = 90
    old = timezone.now() - timedelta(days=91)
    TokenHandout.objects.create(
        hour=old.replace(minute=0, second=0, microsecond=0),
        service_key=key[0],
        connection=authorized,
        count=7,
        first_at=old,
        last_at=old,
    )
    api(client, token_url(authorized), key[1])
    assert list(TokenHandout.objects.values_list("count", flat=True)) == [1]


def test_a_key_for_all_connections_gets_any_token(
    client: Client, other_connection: Connection
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Everything", all_connections=True)
    response = api(client, token_url(other_connection), raw)
    assert response.status_code == 200
    assert response.json()["access_token"] == "other-access-token-Zx91"
    assert response.json()["base_url"] == "https://api-ce.kroger.com/v1/"


def test_a_never_authorized_connection_answers_409_not_authorized(
    client: Client, connection: Connection
) -> None:
    _, raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Early bird", connections=[connection]
    )
    response = api(client, token_url(connection), raw)
    assert response.status_code == 409
    assert response.json() == {
        "error": {"code": "not_authorized", "message": "This connection has not been authorized."}
    }
    assert not TokenHandout.objects.exists()


@pytest.mark.parametrize("code", ["needs_reauthorization", "kroger_unavailable"])
def test_an_unavailable_token_answers_409_with_the_code_and_reason(
    client: Client,
    key: tuple[ServiceKey, str],
    authorized: Connection,
    monkeypatch: pytest.MonkeyPatch,
    code: str,
) -> None:
    def unavailable(connection: Connection, *, actor: Actor = lifecycle.SYSTEM) -> Any:
        raise TokenUnavailable(code, f"Kroger said no ({code}).")

    monkeypatch.setattr(lifecycle, "get_access_token", unavailable)
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 409
    assert response.json() == {"error": {"code": code, "message": f"Kroger said no ({code})."}}
    assert response["Cache-Control"] == "no-store"


def test_it_passes_the_key_name_as_the_actor_of_a_refresh(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection, monkeypatch: Any
) -> None:
    seen: list[Actor] = []
    original = lifecycle.get_access_token

    def spy(connection: Connection, *, actor: Actor = lifecycle.SYSTEM) -> Any:
        seen.append(actor)
        return original(connection, actor=actor)

    monkeypatch.setattr(lifecycle, "get_access_token", spy)
    api(client, token_url(authorized), key[1])
    assert seen == [Actor(label="service key Shopping list service")]


# --- Keys that do not work -------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/connections/", "token"])
def test_a_missing_key_answers_401_with_a_bearer_challenge(
    client: Client, authorized: Connection, url: str
) -> None:
    response = api(client, token_url(authorized) if url == "token" else url, None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["error"]["code"] == "unauthorized"
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    "header",
    ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", "kcp_abc", "Token kcp_abc"],
)
def test_a_malformed_authorization_header_answers_401(
    client: Client, authorized: Connection, header: str
) -> None:
    response = client.get(token_url(authorized), headers={"Authorization": header})
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "raw",
    ["kcp_00000000_notarealkeyatallnotarealkeyatall0000000", "ghp_something", "kcp_" + "x" * 300],
)
def test_an_unknown_key_answers_401_invalid_token(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection, raw: str
) -> None:
    response = api(client, token_url(authorized), raw)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api", error="invalid_token"'


def test_a_key_with_one_character_changed_answers_401(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    raw = key[1]
    tampered = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert api(client, token_url(authorized), tampered).status_code == 401


def test_a_revoked_key_stops_working_at_once(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    assert api(client, token_url(authorized), key[1]).status_code == 200
    key[0].revoke(actor_label="test")
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 401
    assert api(client, "/api/v1/connections/", key[1]).status_code == 401


def test_an_expired_key_answers_401(client: Client, authorized: Connection) -> None:
    _, raw = ServiceKey.create_key(
        may_fetch_tokens=True,
        name="Old",
        connections=[authorized],
        expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert api(client, token_url(authorized), raw).status_code == 401
    assert api(client, "/api/v1/connections/", raw).status_code == 401


def test_a_key_that_expires_later_works(client: Client, authorized: Connection) -> None:
    _, raw = ServiceKey.create_key(
        may_fetch_tokens=True,
        name="New",
        connections=[authorized],
        expires_at=timezone.now() + timedelta(days=1),
    )
    assert api(client, token_url(authorized), raw).status_code == 200


def test_a_connection_the_key_may_not_use_answers_404(
    client: Client, key: tuple[ServiceKey, str], other_connection: Connection
) -> None:
    response = api(client, token_url(other_connection), key[1])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert response["Cache-Control"] == "no-store"
    assert "other-access-token" not in response.content.decode()


@pytest.mark.parametrize("code", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "1"])
def test_an_unknown_connection_answers_404_like_a_forbidden_one(
    client: Client, key: tuple[ServiceKey, str], code: str
) -> None:
    response = api(client, f"/api/v1/connections/{code}/token", key[1])
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_key_without_connections_gets_nothing(client: Client, authorized: Connection) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Nothing")
    assert api(client, "/api/v1/connections/", raw).json() == {"connections": []}
    assert api(client, token_url(authorized), raw).status_code == 404


# --- HTTP behaviour --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "head", "options"])
def test_only_get_is_answered(
    method: str, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    # A client that enforces CSRF like a browser would: bearer auth needs no CSRF token.
    strict = Client(enforce_csrf_checks=True)
    response = api(strict, token_url(authorized), key[1], method)
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert response["Cache-Control"] == "no-store"
    assert not TokenHandout.objects.exists()


def test_every_answer_forbids_caching(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    answers = [
        api(client, "/api/v1/connections/", key[1]),
        api(client, token_url(authorized), key[1]),
        api(client, token_url(authorized), None),
        api(client, "/api/v1/connections/00000000-0000-4000-8000-000000000000/token", key[1]),
        client.get("/api/v1/openapi.json"),
    ]
    for response in answers:
        assert response["Cache-Control"] == "no-store", response


def test_a_session_does_not_stand_in_for_a_key(
    client: Client, admin_user: Any, authorized: Connection
) -> None:
    client.force_login(admin_user)
    assert client.get(token_url(authorized)).status_code == 401


# --- Bookkeeping ---------------------------------------------------------------------------


def test_it_records_when_the_key_was_last_used_at_most_once_a_minute(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    assert key[0].last_used_at is None
    api(client, token_url(authorized), key[1])
    key[0].refresh_from_db()
    first = key[0].last_used_at
    assert first is not None and timezone.now() - first < timedelta(seconds=30)
    api(client, "/api/v1/connections/", key[1])
    key[0].refresh_from_db()
    assert key[0].last_used_at == first
    ServiceKey.objects.filter(pk=key[0].pk).update(last_used_at=first - timedelta(minutes=2))
    api(client, "/api/v1/connections/", key[1])
    key[0].refresh_from_db()
    assert key[0].last_used_at is not None and key[0].last_used_at > first


def test_a_token_request_makes_few_queries(
    client: Client,
    key: tuple[ServiceKey, str],
    authorized: Connection,
    django_assert_max_num_queries: Any,
) -> None:
    # Key by hash, connection (with its client) scoped to the key, the hour's hand-out count.
    # The first request of a minute also stamps last_used_at; the first of an hour inserts
    # the hour's row and prunes old ones; the first hand-out makes the connection warm (one
    # update of its renewal due time).
    with django_assert_max_num_queries(8):
        assert api(client, token_url(authorized), key[1]).status_code == 200
    ServiceKey.objects.filter(pk=key[0].pk).update(last_used_at=None)
    with django_assert_max_num_queries(4):
        assert api(client, token_url(authorized), key[1]).status_code == 200
    # In steady use: one statement on PostgreSQL (the key, the connection and the count).
    one_statement = connection_db.vendor == "postgresql"
    with django_assert_max_num_queries(1 if one_statement else 3):
        assert api(client, token_url(authorized), key[1]).status_code == 200
    assert TokenHandout.objects.get().count == 3


def test_a_token_request_that_gets_no_token_is_not_counted(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection, settings: Any
) -> None:
    api(client, token_url(authorized), key[1])
    # Online with an unexpired token, which the keys configured now cannot decrypt.
    settings.ENCRYPTION_KEYS = generate_key(settings.ENCRYPTION_KEYS.split(":", 1)[0])
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "secrets_unreadable"
    assert TokenHandout.objects.get().count == 1


def test_listing_makes_a_constant_number_of_queries(
    client: Client,
    authorized: Connection,
    other_connection: Connection,
    django_assert_max_num_queries: Any,
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Everything", all_connections=True)
    api(client, "/api/v1/connections/", raw)
    with django_assert_max_num_queries(3):
        assert len(api(client, "/api/v1/connections/", raw).json()["connections"]) == 2


def test_an_offline_connection_with_a_valid_token_is_listed_as_offline(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    make_offline(authorized, "Kroger refused the refresh token.")
    listed = api(client, "/api/v1/connections/", key[1]).json()["connections"]
    assert listed[0]["status"] == ConnectionStatus.OFFLINE


# --- Tokens that need a refresh (the fake Kroger over real HTTP) ------------------------------


@pytest.fixture
def expired(connection: Connection, fake_kroger: Any) -> Connection:
    authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1))
    return connection


def test_an_expired_token_is_refreshed_once_and_handed_out(
    client: Client, expired: Connection, fake_kroger: Any
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Refresher", connections=[expired])
    old = expired.access_token
    response = api(client, token_url(expired), raw)
    assert response.status_code == 200
    body = response.json()
    assert body["access_token"] != old
    assert body["access_token"] in fake_kroger.issued
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    assert api(client, token_url(expired), raw).json()["access_token"] == body["access_token"]
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    refreshed = AuditEvent.objects.get(action=AuditAction.REFRESHED)
    assert refreshed.actor_label == "service key Refresher"
    assert TokenHandout.objects.get().count == 2


def test_a_refused_grant_answers_409_needs_reauthorization(
    client: Client, expired: Connection, fake_kroger: Any
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Refresher", connections=[expired])
    fake_kroger.fail_token("invalid_grant")
    response = api(client, token_url(expired), raw)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "needs_reauthorization"
    assert response.json()["error"]["message"]
    assert expired.access_token not in response.content.decode()
    # Later callers get the same answer without another call to Kroger.
    assert api(client, token_url(expired), raw).json()["error"]["code"] == "needs_reauthorization"
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1
    assert not TokenHandout.objects.exists()


def test_kroger_failing_answers_409_kroger_unavailable(
    client: Client, expired: Connection, fake_kroger: Any
) -> None:
    _, raw = ServiceKey.create_key(may_fetch_tokens=True, name="Refresher", connections=[expired])
    fake_kroger.fail_token("500")
    response = api(client, token_url(expired), raw)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "kroger_unavailable"


def test_a_connection_needing_reauthorization_answers_409_even_with_a_valid_token(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    make_offline(authorized, NEEDS_REAUTHORIZATION)
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "needs_reauthorization"
    assert error["message"].startswith("Needs reauthorization: ")
    assert "Authorize it again" in error["message"]
    assert ACCESS not in response.content.decode()
    assert not TokenHandout.objects.exists()


def test_a_token_kroger_refused_in_a_test_is_replaced_before_it_is_handed_out(
    client: Client, connection: Connection, fake_kroger: Any
) -> None:
    authorize(connection, fake_kroger)
    _, raw = ServiceKey.create_key(
        may_fetch_tokens=True, name="Refresher", connections=[connection]
    )
    fake_kroger.expire_access_tokens()
    lifecycle.run_connection_test(
        connection, actor=Actor()
    )  # Kroger answers 401 invalid_token: Offline

    response = api(client, token_url(connection), raw)

    assert response.status_code == 200
    assert response.json()["access_token"] != connection.access_token
    assert response.json()["access_token"] in fake_kroger.access_tokens
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1


def test_an_offline_connection_backing_off_answers_409_kroger_unavailable(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    make_offline(authorized, "Kroger unreachable: Kroger had a server error (HTTP 500).")
    Connection.objects.filter(pk=authorized.pk).update(
        refresh_failures=1, next_refresh_at=timezone.now() + timedelta(minutes=5)
    )
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "kroger_unavailable"
    assert error["message"].startswith("Kroger unreachable: Kroger had a server error")
    assert ACCESS not in response.content.decode()


def test_a_token_that_expired_before_its_last_refresh_is_renewed_not_a_crash(
    client: Client, connection: Connection, fake_kroger: Any
) -> None:
    authorize(connection, fake_kroger)
    now = timezone.now()
    Connection.objects.filter(pk=connection.pk).update(
        last_refreshed_at=now, token_expires_at=now - timedelta(seconds=1)
    )
    _, raw = ServiceKey.create_key(name="Late", connections=[connection], may_fetch_tokens=True)
    response = api(client, token_url(connection), raw)
    assert response.status_code == 200
    assert len(fake_kroger.token_calls_for("refresh_token")) == 1


def test_the_api_runs_only_the_middleware_it_needs(
    client: Client, key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    response = api(client, token_url(authorized), key[1])
    assert response.status_code == 200
    assert response["X-Content-Type-Options"] == "nosniff"  # the HTTPS rules still apply
    assert not response.cookies  # no session, no CSRF cookie
    assert "Content-Security-Policy" not in response and "X-Frame-Options" not in response
    # The pages keep their whole list.
    page = client.get("/accounts/login/")
    assert "Content-Security-Policy" in page and page["X-Frame-Options"] == "DENY"
    assert django_settings.CSRF_COOKIE_NAME in page.cookies


def test_the_api_still_refuses_a_host_it_does_not_serve(
    key: tuple[ServiceKey, str], authorized: Connection
) -> None:
    response = api(Client(HTTP_HOST="portal.example.net"), token_url(authorized), key[1])
    assert response.status_code == 400
    assert not TokenHandout.objects.exists()
