"""Token answers no real Kroger sends, at the callback, the refresh and the worker.

Kroger invalidates the old refresh token the moment it answers. After every hostile answer the
refresh token the portal holds (the previous one, or the new one if the answer carried it
intact) must still work at the fake Kroger, nothing must be a 500, and the status must say
what is true: no token that cannot be used is ever handed out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from connections_app import lifecycle, renewal_policy, worker
from connections_app.models import Connection, ConnectionStatus, ServiceKey
from tests.connection_states import authorize, reloaded
from tests.fakes.fake_kroger import FakeKroger
from tests.test_oauth_callback import authorized_callback, finish

pytestmark = pytest.mark.django_db

Craft = Callable[[dict[str, Any]], Any]


def setting(name: str, value: Any) -> Craft:
    return lambda body: {**body, name: value}


def without(name: str) -> Craft:
    return lambda body: {key: value for key, value in body.items() if key != name}


def refresh_with(suffix: str) -> Craft:
    return lambda body: {**body, "refresh_token": body["refresh_token"] + suffix}


# Answers that still carry the new refresh token intact: it must be kept.
KEEPS_NEW_REFRESH = {
    "huge expires_in": setting("expires_in", 10**12),
    "enormous expires_in": setting("expires_in", 2**70),
    "float expires_in": setting("expires_in", 1e308),
    "negative expires_in": setting("expires_in", -1800),
    "negative expires_in string": setting("expires_in", "-1800"),
    "zero expires_in": setting("expires_in", 0),
    "expires_in list": setting("expires_in", [1800]),
    "expires_in of one second": setting("expires_in", 1),
    "no expires_in": without("expires_in"),
    "non-ASCII access token": setting("access_token", "tökén-ünïcode"),
    "CR/LF access token": setting("access_token", "abc\r\nX-Injected: yes"),
    "NUL in access token": setting("access_token", "abc\x00def"),
    "10 kB access token": setting("access_token", "a" * 10_000),
    "access token number": setting("access_token", 12345),
    "no access token": without("access_token"),
    "wrong token_type": setting("token_type", "mac"),
    "CR/LF token_type": setting("token_type", "bearer\r\n"),
    "token_type number": setting("token_type", 1),
}
# Answers without a usable new refresh token: garbage (Kroger is taken not to have rotated).
KEEPS_PREVIOUS_REFRESH = {
    "non-ASCII refresh token": setting("refresh_token", "réfresh-tökén"),
    "CR/LF refresh token": refresh_with("\r\nX-Injected: yes"),
    "NUL in refresh token": refresh_with("\x00"),
    "10 kB refresh token": setting("refresh_token", "r" * 10_000),
    "refresh token number": setting("refresh_token", 42),
    "refresh token object": setting("refresh_token", {"value": "x"}),
    "answer is a list": lambda body: [body],
    "answer is a string": lambda body: "access_token=abc",
    "answer is null": lambda body: None,
    "empty answer": lambda body: {},
}
# Answers whose scope is not a scope: the scope is ignored (as if Kroger had sent none).
IGNORES_SCOPE = {
    "10 kB scope": setting("scope", "product.compact " * 640),
    "NUL in scope": setting("scope", "product.compact\x00cart.basic:write"),
    "CR/LF in scope": setting("scope", "product.compact\r\nX-Injected: yes"),
    "scope list": setting("scope", ["product.compact"]),
    "scope number": setting("scope", 5),
}
HOSTILE = {**KEEPS_NEW_REFRESH, **KEEPS_PREVIOUS_REFRESH}


def still_works(connection: Connection, fake: FakeKroger) -> None:
    """The refresh token the portal holds gets a fresh, usable token from the fake Kroger."""
    stored = reloaded(connection)
    assert stored.refresh_token in fake.refresh_tokens
    assert fake.refresh_tokens[stored.refresh_token].valid
    Connection.objects.filter(pk=connection.pk).update(next_refresh_at=None)  # backoff over
    token = lifecycle.renew(reloaded(connection), actor=lifecycle.SYSTEM)
    assert token.access_token in fake.access_tokens
    assert reloaded(connection).status == ConnectionStatus.ONLINE


def assert_truthful_after_refresh(connection: Connection, previous_refresh: str, name: str) -> None:
    stored = reloaded(connection)
    if name in KEEPS_NEW_REFRESH:
        assert stored.refresh_token != previous_refresh
    else:
        assert stored.refresh_token == previous_refresh
    # The old access token had expired: nothing usable, and the page says why.
    assert stored.status == ConnectionStatus.OFFLINE
    assert stored.status_reason.startswith("Kroger unreachable: Kroger")
    assert stored.usable_token() is None


@pytest.fixture
def expired(connection: Connection, fake_kroger: FakeKroger) -> Connection:
    # Warm (in use), so that the worker renews it as soon as its token expires.
    return authorize(connection, fake_kroger, valid_for=timedelta(minutes=-1), warm=True)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_api_answers_json_409_and_keeps_a_working_refresh_token(
    name: str, expired: Connection, fake_kroger: FakeKroger
) -> None:
    previous = expired.refresh_token
    _, key = ServiceKey.create_key(name="Shop", all_connections=True, may_fetch_tokens=True)
    fake_kroger.craft_token_answers(HOSTILE[name])

    response = Client().get(
        f"/api/v1/connections/{expired.code}/token", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "kroger_unavailable"
    assert_truthful_after_refresh(expired, previous, name)
    still_works(expired, fake_kroger)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_refresh_button_says_what_happened_and_keeps_a_working_refresh_token(
    name: str, client: Client, owner: Any, expired: Connection, fake_kroger: FakeKroger
) -> None:
    previous = expired.refresh_token
    client.force_login(owner)
    fake_kroger.craft_token_answers(HOSTILE[name])

    response = client.post(f"/connections/{expired.code}/refresh/", follow=True)

    assert response.status_code == 200
    assert "The token was not refreshed: Kroger" in response.content.decode()
    assert_truthful_after_refresh(expired, previous, name)
    still_works(expired, fake_kroger)


@pytest.mark.parametrize("name", HOSTILE)
def test_the_worker_keeps_a_working_refresh_token(
    name: str, expired: Connection, fake_kroger: FakeKroger
) -> None:
    previous = expired.refresh_token
    fake_kroger.craft_token_answers(HOSTILE[name])

    assert worker.refresh_due(concurrency=1) == 1

    assert_truthful_after_refresh(expired, previous, name)
    still_works(expired, fake_kroger)


@pytest.mark.parametrize("name", HOSTILE)
def test_a_reauthorization_keeps_a_working_refresh_token(
    name: str, client: Client, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    previous = reloaded(connection).refresh_token
    client.force_login(owner)
    callback = authorized_callback(client, connection, fake_kroger)
    fake_kroger.craft_token_answers(HOSTILE[name])

    response = finish(client, callback, follow=True)

    assert response.status_code == 200
    page = response.content.decode()
    stored = reloaded(connection)
    if name in KEEPS_NEW_REFRESH:
        assert stored.refresh_token != previous
        assert "is authorized, but Kroger" in page
        assert stored.status == ConnectionStatus.OFFLINE
        assert stored.usable_token() is None
    else:
        assert "Authorization failed. Kroger (Production) sent" in page
        assert stored.refresh_token == previous  # a failed authorization changes nothing
    still_works(connection, fake_kroger)


def test_a_token_that_expired_on_its_way_is_a_409_not_a_500(
    expired: Connection, fake_kroger: FakeKroger
) -> None:
    fake_kroger.expires_in = 1
    fake_kroger.token_delay = 1.2  # the answer arrives after the token it carries expired
    _, key = ServiceKey.create_key(name="Shop", all_connections=True, may_fetch_tokens=True)
    previous = expired.refresh_token

    response = Client().get(
        f"/api/v1/connections/{expired.code}/token", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 409
    assert "valid for only 0 seconds when it arrived" in response.json()["error"]["message"]
    assert reloaded(expired).refresh_token != previous
    fake_kroger.expires_in, fake_kroger.token_delay = 1800, 0.0
    still_works(expired, fake_kroger)


def test_a_stored_token_that_expired_before_it_was_obtained_is_renewed_not_a_500(
    connection: Connection, fake_kroger: FakeKroger
) -> None:
    authorize(connection, fake_kroger)
    now = timezone.now()
    # As left by a token that expired as it arrived: a lifetime below zero, still Online.
    Connection.objects.filter(pk=connection.pk).update(
        last_refreshed_at=now, token_expires_at=now - timedelta(seconds=1)
    )
    _, key = ServiceKey.create_key(name="Shop", all_connections=True, may_fetch_tokens=True)

    response = Client().get(
        f"/api/v1/connections/{connection.code}/token", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 200
    assert response.json()["access_token"] in fake_kroger.access_tokens
    assert renewal_policy.refresh_margin(reloaded(connection)) >= timedelta(0)


@pytest.mark.parametrize("name", IGNORES_SCOPE)
def test_a_scope_that_is_not_one_is_ignored_and_the_rest_kept(
    name: str, client: Client, owner: Any, expired: Connection, fake_kroger: FakeKroger
) -> None:
    granted = reloaded(expired).granted_scopes
    _, key = ServiceKey.create_key(name="Shop", all_connections=True, may_fetch_tokens=True)
    fake_kroger.craft_token_answers(IGNORES_SCOPE[name])

    response = Client().get(
        f"/api/v1/connections/{expired.code}/token", HTTP_AUTHORIZATION=f"Bearer {key}"
    )

    assert response.status_code == 200
    assert response.json()["access_token"] in fake_kroger.access_tokens
    stored = reloaded(expired)
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.granted_scopes == granted  # what was granted before, not what was sent
    assert fake_kroger.refresh_tokens[stored.refresh_token].valid

    client.force_login(owner)
    callback = authorized_callback(client, expired, fake_kroger)
    fake_kroger.craft_token_answers(IGNORES_SCOPE[name])
    finish(client, callback)
    stored = reloaded(expired)
    assert stored.status == ConnectionStatus.ONLINE
    assert stored.granted_scopes == "cart.basic:write product.compact"  # the ones requested
