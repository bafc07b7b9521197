"""Starting an authorization: "Save & authorize" and "Reauthorize", for both grant types."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection as db
from django.utils import timezone

from connections_app import kroger
from connections_app.models import (
    AuditAction,
    AuditEvent,
    AuthorizationAttempt,
    Connection,
    ConnectionStatus,
    Environment,
    Scope,
)
from tests.conftest import CLIENT_SECRET
from tests.fakes.fake_kroger import FakeKroger
from tests.test_oauth_callback import finish

pytestmark = pytest.mark.django_db

CC_SECRET = "cc-secret-Zr4Tq8Wn2Yp6"  # the cc_client fixture's


@pytest.fixture
def fake(fake_kroger: FakeKroger, oauth_client: Any, cc_client: Any) -> FakeKroger:
    scopes = {"product.compact", "cart.basic:write", "profile.compact"}
    fake_kroger.register_client(oauth_client.client_id, CLIENT_SECRET, scopes)
    fake_kroger.register_client(cc_client.client_id, CC_SECRET, {"product.compact"})
    return fake_kroger


@pytest.fixture
def cc_connection(cc_client: Any, owner: Any) -> Connection:
    conn = Connection.objects.create(
        name="Catalogue", environment=Environment.CERTIFICATION, client=cc_client
    )
    conn.scopes.set(Scope.objects.filter(name="product.compact"))
    return conn


def authorize(client: Any, connection: Connection) -> Any:
    return client.post(f"/connections/{connection.code}/authorize/")


def test_it_sends_the_browser_to_krogers_consent_page(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger, settings: Any
) -> None:
    client.force_login(owner)
    response = authorize(client, connection)

    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (f"{fake.url}connect/oauth2/authorize")
    query = parse_qs(parts.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == [connection.client.client_id]
    assert query["redirect_uri"] == [settings.OAUTH_REDIRECT_URI]
    assert query["scope"] == ["cart.basic:write product.compact"]
    assert query["code_challenge_method"] == ["S256"]
    assert "banner" not in query
    state = query["state"][0]
    assert len(state) >= 43  # 256 bits, base64url

    attempt = AuthorizationAttempt.objects.get()
    assert attempt.state_hash == AuthorizationAttempt.hash_state(state)
    assert (attempt.user, attempt.connection, attempt.environment) == (
        owner,
        connection,
        "production",
    )
    assert query["code_challenge"] == [kroger.code_challenge(attempt.code_verifier)]
    assert AuditEvent.objects.filter(action=AuditAction.AUTHORIZATION_STARTED).exists()


def test_the_state_and_verifier_are_not_stored_readably(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    state = parse_qs(urlsplit(authorize(client, connection)["Location"]).query)["state"][0]
    verifier = AuthorizationAttempt.objects.get().code_verifier
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_app_authorizationattempt")
        raw = " ".join(str(value) for row in cursor.fetchall() for value in row)
    assert state not in raw
    assert verifier not in raw


def test_it_asks_for_the_connections_banner(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    connection.banner = "ralphs"
    connection.save()
    client.force_login(owner)
    query = parse_qs(urlsplit(authorize(client, connection)["Location"]).query)
    assert query["banner"] == ["ralphs"]


def panel_post(client: Any, oauth_client: Any, banner: str) -> Any:
    data = {
        "name": "Weekly shop",
        "environment": oauth_client.environment,
        "client": str(oauth_client.code),
        "scopes": ["product.compact"],
        "banner": banner,
        "action": "authorize",
    }
    return client.post("/connections/new/", data)


def test_the_banner_chosen_in_the_panel_reaches_the_consent_page(
    client: Any, owner: Any, oauth_client: Any, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = panel_post(client, oauth_client, banner="harristeeter")
    assert response.status_code == 302
    query = parse_qs(urlsplit(response["Location"]).query)
    assert query["banner"] == ["harristeeter"]
    assert Connection.objects.get(name="Weekly shop").banner == "harristeeter"


def test_a_blank_banner_in_the_panel_sends_none(
    client: Any, owner: Any, oauth_client: Any, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = panel_post(client, oauth_client, banner="")
    assert response.status_code == 302
    assert "banner" not in parse_qs(urlsplit(response["Location"]).query)
    assert Connection.objects.get(name="Weekly shop").banner == ""


def test_attempts_older_than_a_day_are_cleaned_up(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    authorize(client, connection)
    AuthorizationAttempt.objects.update(created_at=timezone.now() - timedelta(days=2))
    authorize(client, connection)
    assert AuthorizationAttempt.objects.count() == 1


def test_authorize_is_post_only(client: Any, owner: Any, connection: Connection) -> None:
    client.force_login(owner)
    assert client.get(f"/connections/{connection.code}/authorize/").status_code == 405


@pytest.mark.parametrize(("who", "status"), [("teammate", 403), ("outsider", 404)])
def test_only_editors_may_authorize(
    client: Any, request: Any, connection: Connection, fake: FakeKroger, who: str, status: int
) -> None:
    client.force_login(request.getfixturevalue(who))
    assert authorize(client, connection).status_code == status
    assert not AuthorizationAttempt.objects.exists()


def test_anonymous_visitors_are_sent_to_sign_in(client: Any, connection: Connection) -> None:
    response = authorize(client, connection)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_admins_may_authorize(
    client: Any, admin_user: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(admin_user)
    assert authorize(client, connection).status_code == 302
    assert AuthorizationAttempt.objects.get().user == admin_user


def test_the_connection_page_offers_authorize_then_reauthorize(
    client: Any, owner: Any, teammate: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert ">Authorize</button>" in page
    access, refresh = fake.issue_tokens(connection.client.client_id, ["product.compact"])
    connection.store_tokens(access_token=access, refresh_token=refresh, expires_in=1800)
    page = client.get(f"/connections/{connection.code}/").content.decode()
    assert ">Reauthorize</button>" in page
    client.force_login(teammate)
    assert "Reauthorize" not in client.get(f"/connections/{connection.code}/").content.decode()


def test_reauthorize_replaces_the_tokens_only_when_new_ones_arrive(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    old_access, old_refresh = fake.issue_tokens(connection.client.client_id, ["product.compact"])
    connection.store_tokens(access_token=old_access, refresh_token=old_refresh, expires_in=1800)
    client.force_login(owner)

    consent_url = authorize(client, connection)["Location"]
    connection.refresh_from_db()
    assert connection.access_token == old_access  # still usable while the shopper decides

    callback = urlsplit(fake.consent(consent_url))
    finish(client, f"{callback.path}?{callback.query}")
    connection.refresh_from_db()
    assert connection.access_token not in ("", old_access)
    assert connection.refresh_token not in ("", old_refresh)
    assert connection.status == ConnectionStatus.ONLINE


def test_save_and_authorize_on_the_create_panel_goes_to_kroger(
    client: Any, owner: Any, oauth_client: Any, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = client.post(
        "/connections/new/",
        {
            "name": "Weekly shop",
            "environment": "production",
            "client": str(oauth_client.code),
            "scopes": ["cart.basic:write"],
            "action": "authorize",
        },
    )
    assert response.status_code == 302
    assert response["Location"].startswith(f"{fake.url}connect/oauth2/authorize?")
    assert AuthorizationAttempt.objects.get().connection.name == "Weekly shop"


# --- Client credentials ----------------------------------------------------------------------


def test_client_credentials_fetch_a_token_directly(
    client: Any, owner: Any, cc_connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = authorize(client, cc_connection)

    assert response["Location"] == f"/connections/{cc_connection.code}/"
    cc_connection.refresh_from_db()
    assert cc_connection.status == ConnectionStatus.ONLINE
    assert cc_connection.access_token in fake.access_tokens
    assert cc_connection.refresh_token == ""
    assert cc_connection.granted_scopes == "product.compact"
    [call] = fake.token_calls
    assert (call["grant_type"], call["scope"], call["basic_auth"]) == (
        "client_credentials",
        "product.compact",
        True,
    )
    assert not AuthorizationAttempt.objects.exists()
    assert AuditEvent.objects.filter(action=AuditAction.AUTHORIZED, actor=owner).exists()
    assert "is Online" in client.get(response["Location"]).content.decode()


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("500", "server error (HTTP 500)"),
        ("timeout", "did not answer within 2 seconds"),
        ("garbage", "not JSON"),
        ("invalid_client", "Check the client secret"),
        ("invalid_scope", "Check the scopes assigned to the app"),
    ],
)
def test_a_failed_client_credentials_token_says_why_and_keeps_the_old_one(
    client: Any,
    owner: Any,
    cc_connection: Connection,
    fake: FakeKroger,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    message: str,
) -> None:
    old, _ = fake.issue_tokens(cc_connection.client.client_id, ["product.compact"])
    cc_connection.store_tokens(access_token=old, expires_in=1800)
    client.force_login(owner)
    caplog.set_level(logging.DEBUG)
    fake.fail_token(failure)

    page = client.post(f"/connections/{cc_connection.code}/authorize/", follow=True)

    text = page.content.decode()
    assert "Authorization failed." in text
    assert message in text
    cc_connection.refresh_from_db()
    assert cc_connection.access_token == old
    assert cc_connection.status == ConnectionStatus.ONLINE
    for secret in (old, CC_SECRET):
        assert secret not in text
        assert secret not in caplog.text


def test_an_unreachable_kroger_is_explained(
    client: Any, owner: Any, cc_connection: Connection, settings: Any
) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.KROGER_BASE_URLS = {"certification": f"https://127.0.0.1:{port}/v1/"}
    client.force_login(owner)
    text = client.post(f"/connections/{cc_connection.code}/authorize/", follow=True)
    assert "Could not reach Kroger (Certification)" in text.content.decode()
    cc_connection.refresh_from_db()
    assert cc_connection.status == ConnectionStatus.NOT_AUTHORIZED
