"""Lost or wrong ENCRYPTION_KEYS are said in one line naming them, and the portal stays usable
for putting things right: secrets show as unreadable and new ones can be entered."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core import checks, mail
from django.utils import timezone

from connections_app import key_ring_check, lifecycle, worker
from connections_app.crypto import generate_key
from connections_app.lifecycle import Actor
from connections_app.models import Connection, ConnectionStatus, OAuthClient, ServiceKey
from tests.conftest import CLIENT_SECRET
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger
from tests.test_admin import change_url

pytestmark = pytest.mark.django_db

NEW_SECRET = "client-secret-Entered-Again-42"


@pytest.fixture
def stored(connection: Connection) -> Connection:
    connection.store_tokens(access_token="access-Hq2", expires_in=1800, refresh_token="refresh-Wr5")
    return connection


@pytest.fixture
def wrong_keys(stored: Connection, settings: Any) -> str:
    """A new key under the old key's id: as when `.env` was written again."""
    key_id = settings.ENCRYPTION_KEYS.split(":", 1)[0]
    settings.ENCRYPTION_KEYS = generate_key(key_id)
    return key_id


@pytest.fixture
def lost_keys(stored: Connection, settings: Any) -> str:
    """Only a key the stored secrets were not encrypted with: as after restoring a backup."""
    key_id = settings.ENCRYPTION_KEYS.split(":", 1)[0]
    settings.ENCRYPTION_KEYS = generate_key("k9")
    return key_id


# --- Saying so: start-up check and /healthz ----------------------------------------------


def test_healthz_is_ok_when_every_secret_is_readable(client: Any, stored: Connection) -> None:
    response = client.get("/healthz")
    assert response.json() == {"status": "ok", "database": "ok", "encryption_keys": "ok"}


@pytest.mark.parametrize("keys", ["wrong_keys", "lost_keys"])
def test_healthz_says_in_one_line_that_encryption_keys_cannot_read_the_secrets(
    client: Any, request: pytest.FixtureRequest, keys: str
) -> None:
    key_id = request.getfixturevalue(keys)
    response = client.get("/healthz")
    assert response.status_code == 200  # the portal stays up: secrets are entered again there
    body = response.json()
    assert body["status"] == "degraded"
    line = body["encryption_keys"]
    assert "\n" not in line
    assert line.startswith("ENCRYPTION_KEYS cannot read stored secrets:")
    assert f"key '{key_id}'" in line
    assert "client secrets" in line and "connection tokens" in line


def test_the_lost_key_is_named_as_missing(lost_keys: str) -> None:
    line = key_ring_check.unreadable_secrets(fresh=True)
    assert f"encrypted with key '{lost_keys}', which is not in it" in line


def test_the_start_up_checks_warn_naming_encryption_keys(wrong_keys: str) -> None:
    found = [m for m in checks.run_checks() if m.id == "connections_app.W001"]
    assert len(found) == 1
    assert found[0].level == checks.WARNING  # the portal still starts
    assert "ENCRYPTION_KEYS" in found[0].msg and "\n" not in found[0].msg


def test_the_start_up_checks_are_quiet_when_the_keys_are_right(stored: Connection) -> None:
    assert not [m for m in checks.run_checks() if m.id == "connections_app.W001"]


# --- Pages and the admin: unreadable, and a new secret is accepted --------------------------


def test_the_client_pages_show_the_secret_as_unreadable_and_take_a_new_one(
    client: Any, owner: Any, oauth_client: OAuthClient, wrong_keys: str
) -> None:
    client.force_login(owner)
    listing = client.get("/clients/")
    assert listing.status_code == 200
    assert "unreadable — enter it again" in listing.content.decode()
    edit = client.get(f"/clients/{oauth_client.code}/edit/")
    assert edit.status_code == 200
    assert "The stored secret is unreadable — enter it again" in edit.content.decode()

    data = {
        "name": oauth_client.name,
        "environment": oauth_client.environment,
        "grant_type": oauth_client.grant_type,
        "client_id": oauth_client.client_id,
        "client_secret": "",
    }
    blank = client.post(f"/clients/{oauth_client.code}/edit/", data)
    assert blank.status_code == 400
    assert "Enter the client secret again" in blank.content.decode()
    saved = client.post(
        f"/clients/{oauth_client.code}/edit/", {**data, "client_secret": NEW_SECRET}
    )
    assert saved.status_code == 302
    assert OAuthClient.objects.get(pk=oauth_client.pk).client_secret == NEW_SECRET


def test_the_admin_shows_unreadable_secrets_and_takes_a_new_one(
    client: Any, admin_user: Any, oauth_client: OAuthClient, stored: Connection, wrong_keys: str
) -> None:
    client.force_login(admin_user)
    listing = client.get("/admin/connections_app/oauthclient/")
    assert "unreadable — enter it again" in listing.content.decode()
    page = client.get(change_url(stored))
    assert page.status_code == 200
    assert "access token unreadable — reauthorize" in page.content.decode()
    data = {
        "name": oauth_client.name,
        "environment": oauth_client.environment,
        "grant_type": oauth_client.grant_type,
        "client_id": oauth_client.client_id,
        "new_client_secret": "",
    }
    blank = client.post(change_url(oauth_client), data)
    assert "the stored one cannot be decrypted with ENCRYPTION_KEYS" in blank.content.decode()
    response = client.post(change_url(oauth_client), {**data, "new_client_secret": NEW_SECRET})
    assert response.status_code == 302
    assert OAuthClient.objects.get(pk=oauth_client.pk).client_secret == NEW_SECRET


def test_the_connection_pages_work_and_offer_to_reauthorize(
    client: Any, owner: Any, stored: Connection, wrong_keys: str
) -> None:
    client.force_login(owner)
    assert client.get("/").status_code == 200
    page = client.get(f"/connections/{stored.code}/")
    assert page.status_code == 200
    assert ">Reauthorize</button>" in page.content.decode()
    assert client.get(f"/connections/{stored.code}/edit/").status_code == 200


def test_authorizing_with_an_unreadable_client_secret_says_what_to_do(
    client: Any, owner: Any, stored: Connection, wrong_keys: str, fake_kroger: FakeKroger
) -> None:
    client.force_login(owner)
    response = client.post(f"/connections/{stored.code}/authorize/", follow=True)
    assert response.status_code == 200
    assert "is unreadable — enter it again on the client&#x27;s page" in response.content.decode()
    assert fake_kroger.token_calls == [] and fake_kroger.authorize_requests == []


def test_reentering_the_secret_clears_the_health_line(
    client: Any, owner: Any, oauth_client: OAuthClient, stored: Connection, wrong_keys: str
) -> None:
    oauth_client = OAuthClient.objects.get(pk=oauth_client.pk)
    oauth_client.client_secret = CLIENT_SECRET
    oauth_client.save()
    lifecycle.disconnect(stored, actor=Actor(owner))
    assert key_ring_check.unreadable_secrets(fresh=True) == ""


def test_the_api_answers_json_when_the_tokens_cannot_be_read(
    client: Any, stored: Connection, wrong_keys: str
) -> None:
    _, raw = ServiceKey.create_key(name="Shop", all_connections=True, may_fetch_tokens=True)
    response = client.get(
        f"/api/v1/connections/{stored.code}/token", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert response.status_code == 409
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    error = response.json()["error"]
    assert error["code"] == "secrets_unreadable"
    assert "ENCRYPTION_KEYS" in error["message"]


def test_a_page_that_needs_an_unreadable_secret_says_so(
    client: Any, owner: Any, stored: Connection, wrong_keys: str
) -> None:
    client.force_login(owner)
    response = client.post(f"/connections/{stored.code}/test/", follow=True)
    assert response.status_code == 200
    assert "ENCRYPTION_KEYS cannot decrypt this connection" in response.content.decode()


# --- The worker: backs off, Offline with the reason, people told once -----------------------


def test_the_worker_takes_unreadable_connections_offline_and_tells_people_once(
    stored: Connection, wrong_keys: str, admin_user: Any, caplog: pytest.LogCaptureFixture
) -> None:
    now = timezone.now()  # in use and expiring: due
    Connection.objects.filter(pk=stored.pk).update(
        token_expires_at=now, handed_out_at=now, renewal_due_at=now
    )

    assert worker.refresh_due(concurrency=1) == 1

    after = Connection.objects.get(pk=stored.pk)
    assert after.status == ConnectionStatus.OFFLINE
    assert after.status_reason.startswith(
        "Stored secrets unreadable: ENCRYPTION_KEYS cannot decrypt"
    )
    assert after.next_refresh_at is not None and after.next_refresh_at > timezone.now()
    [email] = mail.outbox
    assert "offline" in email.subject and "ENCRYPTION_KEYS" in email.body
    assert "crashed" not in caplog.text

    assert worker.refresh_due(concurrency=1) == 0  # backing off: not tried every pass
    Connection.objects.filter(pk=stored.pk).update(
        next_refresh_at=timezone.now(), renewal_due_at=timezone.now()
    )
    assert worker.refresh_due(concurrency=1) == 1  # tried again later
    assert len(mail.outbox) == 1  # told once
    assert Connection.objects.get(pk=stored.pk).refresh_failures == 2


def test_restoring_the_keys_brings_the_connection_back(
    stored: Connection, settings: Any, fake_kroger: FakeKroger, admin_user: Any
) -> None:
    good_keys = settings.ENCRYPTION_KEYS
    authorize(stored, fake_kroger, valid_for=timedelta(minutes=-1), warm=True)
    settings.ENCRYPTION_KEYS = generate_key(good_keys.split(":", 1)[0])
    worker.refresh_due(concurrency=1)
    assert Connection.objects.get(pk=stored.pk).status == ConnectionStatus.OFFLINE

    settings.ENCRYPTION_KEYS = good_keys
    Connection.objects.filter(pk=stored.pk).update(
        next_refresh_at=None, renewal_due_at=timezone.now()
    )
    assert worker.refresh_due(concurrency=1) == 1
    assert Connection.objects.get(pk=stored.pk).status == ConnectionStatus.ONLINE
    assert [m.subject for m in mail.outbox][-1].endswith("works again")
