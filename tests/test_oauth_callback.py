"""Kroger's answer after its consent page: GET /oauth/callback/ shows a page that posts it to
/oauth/complete/, where it is checked before any token call."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from connections_app.access import VIEWERS
from connections_app.models import (
    AuditAction,
    AuditEvent,
    AuthorizationAttempt,
    Connection,
    ConnectionStatus,
)
from tests import html_forms
from tests.conftest import CLIENT_SECRET, client_host
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db

SCOPES = {"product.compact", "cart.basic:write", "profile.compact"}


@pytest.fixture
def fake(fake_kroger: FakeKroger, oauth_client: Any) -> FakeKroger:
    fake_kroger.register_client(oauth_client.client_id, CLIENT_SECRET, SCOPES)
    return fake_kroger


def start(client: Any, connection: Connection) -> str:
    """Press "Authorize" on the connection page; return the consent page URL."""
    response = client.post(f"/connections/{connection.code}/authorize/")
    assert response.status_code == 302
    return str(response["Location"])


def callback_path(location: str) -> str:
    """The portal-relative part of where Kroger sends the browser back."""
    parts = urlsplit(location)
    assert parts.path == "/oauth/callback/"
    return f"{parts.path}?{parts.query}"


def authorized_callback(client: Any, connection: Connection, fake: FakeKroger) -> str:
    return callback_path(fake.consent(start(client, connection)))


def callback_form(client: Any, url: str) -> dict[str, str]:
    """Open the callback page, which changes nothing; return the fields its form posts."""
    page = client.get(url)
    assert page.status_code == 200
    assert page["Cache-Control"] == "no-store"
    # The origin alone, for the post's CSRF check: never the code and state in the URL.
    assert page["Referrer-Policy"] == "strict-origin"
    content = page.content.decode()
    assert 'action="/oauth/complete/"' in content
    return {
        str(field["name"]): field.get("value") or ""
        for field in html_forms.read(content).inputs
        if field.get("type") == "hidden"
    }


def finish(client: Any, url: str, **kwargs: Any) -> Any:
    """Land on the callback page and post its form, as its script (or "Continue") does."""
    return client.post("/oauth/complete/", callback_form(client, url), **kwargs)


def test_it_stores_the_tokens_and_shows_the_connection_online(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = finish(client, authorized_callback(client, connection, fake))

    assert response.status_code == 302
    assert response["Location"] == f"/connections/{connection.code}/"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "no-store"
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ONLINE
    assert connection.access_token in fake.access_tokens
    assert connection.refresh_token in fake.refresh_tokens
    assert connection.granted_scopes == "cart.basic:write product.compact"
    assert connection.authorized_at is not None
    assert connection.token_expires_at is not None
    expected_expiry = timezone.now() + timedelta(seconds=1800)
    assert abs(connection.token_expires_at - expected_expiry) < timedelta(seconds=30)
    assert AuditEvent.objects.filter(
        action=AuditAction.AUTHORIZED, connection=connection, actor=owner
    ).exists()
    page = client.get(response["Location"]).content.decode()
    assert "Online" in page
    assert "is authorized and Online" in page
    assert connection.access_token not in page


def test_the_exchange_uses_basic_auth_the_same_redirect_uri_and_the_verifier(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger, settings: Any
) -> None:
    client.force_login(owner)
    consent_url = start(client, connection)
    sent = parse_qs(urlsplit(consent_url).query)
    finish(client, callback_path(fake.consent(consent_url)))

    [call] = fake.token_calls
    assert call["grant_type"] == "authorization_code"
    assert call["basic_auth"] is True
    assert "client_secret" not in call
    assert call["redirect_uri"] == sent["redirect_uri"][0] == settings.OAUTH_REDIRECT_URI
    assert call["code_verifier"]  # the fake checked it against the S256 challenge
    assert AuthorizationAttempt.objects.get().used_at is not None


def test_it_rejects_a_replayed_state(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    form = callback_form(client, url)
    assert client.post("/oauth/complete/", form).status_code == 302

    for replay in (client.post("/oauth/complete/", form), finish(client, url)):
        assert replay.status_code == 400
        page = replay.content.decode()
        assert "already used" in page
        # A reload while the first post was finishing: the connection's page tells the end.
        assert f'href="/connections/{connection.code}/">Open “Store cart”</a>' in page
    assert len(fake.token_calls) == 1


def test_the_callback_page_carries_krogers_answer_and_changes_nothing(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    sent = {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}

    for _ in range(2):  # opening it again changes nothing either
        form = callback_form(client, url)
        assert form.pop("csrfmiddlewaretoken")
        assert form == {"code": sent["code"], "state": sent["state"]}
    assert fake.token_calls == []
    assert AuthorizationAttempt.objects.get().used_at is None
    page = client.get(url).content.decode()
    assert 'role="status"' in page
    assert ">Continue</button>" in page  # what finishes it without JavaScript


def test_the_post_needs_the_pages_csrf_token(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    browser = Client(HTTP_HOST=client_host(), enforce_csrf_checks=True)
    browser.force_login(owner)
    form = callback_form(browser, url)
    forged = {name: value for name, value in form.items() if name != "csrfmiddlewaretoken"}

    assert browser.post("/oauth/complete/", forged).status_code == 403
    assert fake.token_calls == []
    assert AuthorizationAttempt.objects.get().used_at is None

    assert browser.post("/oauth/complete/", form).status_code == 302
    assert len(fake.token_calls) == 1


def test_it_rejects_an_unknown_state_without_calling_kroger(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = finish(client, "/oauth/callback/?" + urlencode({"code": "x", "state": "forged"}))
    assert response.status_code == 400
    assert "does not match any authorization" in response.content.decode()
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "no-store"
    assert fake.token_calls == []


def test_it_rejects_a_state_started_by_someone_else(
    client: Any,
    owner: Any,
    admin_user: Any,
    connection: Connection,
    fake: FakeKroger,
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    client.force_login(admin_user)

    response = finish(client, url)

    assert response.status_code == 403
    assert "started by someone else" in response.content.decode()
    assert fake.token_calls == []
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NOT_AUTHORIZED


def test_it_rejects_a_state_older_than_ten_minutes(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    AuthorizationAttempt.objects.update(created_at=timezone.now() - timedelta(minutes=11))

    response = finish(client, url)

    assert response.status_code == 400
    assert "expired" in response.content.decode()
    assert fake.token_calls == []


def test_it_rejects_a_visitor_who_is_not_signed_in(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    form = callback_form(client, url)
    client.logout()

    for response in (client.get(url), client.post("/oauth/complete/", form)):
        assert response.status_code == 403
        assert "not signed in" in response.content.decode()
        assert response["Referrer-Policy"] == "no-referrer"
    assert fake.token_calls == []


def test_a_viewer_gets_nothing_from_a_callback(
    client: Any, teammate: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(teammate)
    assert client.post(f"/connections/{connection.code}/authorize/").status_code == 403
    response = finish(client, "/oauth/callback/?" + urlencode({"code": "x", "state": "y"}))
    assert response.status_code == 400
    assert fake.token_calls == []


def test_an_editor_demoted_during_the_flow_gets_nothing_from_the_callback(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    url = authorized_callback(client, connection, fake)
    owner.groups.set([Group.objects.get(name=VIEWERS)])

    response = finish(client, url)

    assert response.status_code == 403
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "no-store"
    assert fake.token_calls == []
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NOT_AUTHORIZED


def test_a_declined_consent_leaves_the_connection_not_authorized(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    location = fake.consent(start(client, connection), accept=False)
    assert parse_qs(urlsplit(location).query)["error"] == ["access_denied"]

    response = finish(client, callback_path(location), follow=True)

    assert "Authorization was declined on Kroger&#x27;s page" in response.content.decode()
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.NOT_AUTHORIZED
    assert connection.access_token == ""
    assert fake.token_calls == []
    assert AuditEvent.objects.filter(action=AuditAction.AUTHORIZATION_FAILED).exists()


def test_a_decline_without_state_is_still_explained(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    response = finish(client, "/oauth/callback/?error=access_denied")
    assert response.status_code == 400
    assert "declined on Kroger" in response.content.decode()


def test_another_error_shows_krogers_description(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    fake.register_client(connection.client.client_id, CLIENT_SECRET, {"product.compact"})
    client.force_login(owner)
    location = fake.consent(start(client, connection))  # cart.basic:write is not the app's

    page = finish(client, callback_path(location), follow=True).content.decode()

    assert "Kroger refused the authorization (invalid_scope)" in page
    assert "The app may not request cart.basic:write" in page
    assert "scopes assigned to the app" in page
    assert fake.token_calls == []


def test_a_missing_code_is_a_bad_request(
    client: Any, owner: Any, connection: Connection, fake: FakeKroger
) -> None:
    client.force_login(owner)
    state = parse_qs(urlsplit(start(client, connection)).query)["state"][0]
    response = finish(client, "/oauth/callback/?" + urlencode({"state": state}))
    assert response.status_code == 400
    assert "no authorization code" in response.content.decode()
    assert fake.token_calls == []


@pytest.mark.parametrize(
    ("failure", "message"),
    [
        ("500", "server error (HTTP 500)"),
        ("timeout", "did not answer within 2 seconds"),
        ("garbage", "a reply that is not JSON"),
        ("invalid_client", "Check the client secret"),
        ("invalid_grant", "refused the authorization code"),
        ("invalid_scope", "Check the scopes assigned to the app"),
        ("redirect_uri", "redirect URI registered for this app"),
    ],
)
def test_a_failed_exchange_says_why_and_keeps_the_stored_tokens(
    client: Any,
    owner: Any,
    connection: Connection,
    fake: FakeKroger,
    caplog: pytest.LogCaptureFixture,
    failure: str,
    message: str,
) -> None:
    access, refresh = fake.issue_tokens(connection.client.client_id, ["product.compact"])
    connection.store_tokens(access_token=access, refresh_token=refresh, expires_in=1800)
    client.force_login(owner)
    caplog.set_level(logging.DEBUG)
    url = authorized_callback(client, connection, fake)
    fake.fail_token(failure)

    response = finish(client, url, follow=True)

    page = response.content.decode()
    assert "Authorization failed." in page
    assert message in page
    connection.refresh_from_db()
    assert (connection.access_token, connection.refresh_token) == (access, refresh)
    assert connection.status == ConnectionStatus.ONLINE
    event = AuditEvent.objects.get(action=AuditAction.AUTHORIZATION_FAILED)
    assert event.detail.startswith(failure if failure != "500" else "server")
    code = parse_qs(urlsplit(url).query)["code"][0]
    verifier = fake.token_calls[-1]["code_verifier"]
    for secret in (access, refresh, code, verifier, CLIENT_SECRET):
        assert secret not in caplog.text
        assert secret not in page
        assert secret not in event.detail


def test_nothing_secret_reaches_the_logs_on_success(
    client: Any,
    owner: Any,
    connection: Connection,
    fake: FakeKroger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    client.force_login(owner)
    caplog.set_level(logging.DEBUG)
    url = authorized_callback(client, connection, fake)
    finish(client, url)
    connection.refresh_from_db()
    code = parse_qs(urlsplit(url).query)["code"][0]
    secrets = [connection.access_token, connection.refresh_token, code, CLIENT_SECRET]
    secrets.append(fake.token_calls[-1]["code_verifier"])
    for record in caplog.records:
        for secret in secrets:
            assert secret not in record.getMessage()
