"""Admin pages never show a secret; the raw database holds none in plaintext."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db

from connections_app.models import Connection, OAuthClient
from tests.conftest import CLIENT_SECRET

pytestmark = pytest.mark.django_db

ACCESS = "access-token-Hs83Jd92Kq"
REFRESH = "refresh-token-Pw72Nx41Lz"


@pytest.fixture
def authorized(connection: Connection) -> Connection:
    connection.store_tokens(access_token=ACCESS, refresh_token=REFRESH, expires_in=1800)
    return connection


def assert_no_secret(html: str) -> None:
    for secret in (CLIENT_SECRET, ACCESS, REFRESH):
        assert secret not in html


def test_admin_pages_show_no_secret(client: Any, admin_user: Any, authorized: Connection) -> None:
    client.force_login(admin_user)
    oauth_client = authorized.client
    pages = [
        "/admin/connections_app/oauthclient/",
        f"/admin/connections_app/oauthclient/{oauth_client.pk}/change/",
        "/admin/connections_app/connection/",
        f"/admin/connections_app/connection/{authorized.pk}/change/",
        f"/admin/connections_app/connection/{authorized.pk}/history/",
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        assert_no_secret(response.content.decode())
    detail = client.get(pages[1]).content.decode()
    assert "set (fingerprint" in detail
    assert 'type="password"' in detail


def test_a_blank_secret_in_the_admin_keeps_the_stored_one(
    client: Any, admin_user: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    url = f"/admin/connections_app/oauthclient/{oauth_client.pk}/change/"
    data = {
        "name": "Renamed app",
        "environment": "production",
        "grant_type": "authorization_code",
        "client_id": oauth_client.client_id,
        "new_client_secret": "",
    }
    assert client.post(url, data).status_code == 302
    oauth_client.refresh_from_db()
    assert (oauth_client.name, oauth_client.client_secret) == ("Renamed app", CLIENT_SECRET)

    data["new_client_secret"] = "rotated-secret-Vb5"
    assert client.post(url, data).status_code == 302
    assert OAuthClient.objects.get().client_secret == "rotated-secret-Vb5"


def test_a_raw_read_of_the_database_finds_no_plaintext_secret(authorized: Connection) -> None:
    dump: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            dump.extend(repr(row) for row in cursor.fetchall())
    text = "\n".join(dump)
    assert "v1:test1:" in text
    for secret in (CLIENT_SECRET, ACCESS, REFRESH):
        assert secret not in text
