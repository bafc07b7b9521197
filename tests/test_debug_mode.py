"""`make run` (DEBUG on): the debug page and the development server's log show no secret."""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from django.test import Client

from connections_app import service_keys
from connections_app.models import Connection, GrantType, OAuthClient, Scope
from tests.conftest import CLIENT_SECRET
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger
from tests.test_settings import GOOD, ROOT

pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_client(settings: Any, admin_user: Any) -> Client:
    settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    return client


def debug_page(response: Any) -> str:
    assert response.status_code == 500
    page = response.content.decode()
    assert "Traceback" in page  # Django's technical page, with its frames
    return page


def test_the_debug_page_of_a_crash_in_a_kroger_call_shows_no_secret(
    debug_client: Client, settings: Any, cc_client: OAuthClient, fake_kroger: FakeKroger
) -> None:
    connection = Connection.objects.create(
        name="Catalogue", environment=cc_client.environment, client=cc_client
    )
    connection.scopes.set(Scope.objects.filter(name="product.compact"))
    del settings.KROGER_TIMEOUT_SECONDS  # the call crashes below the frames holding secrets

    page = debug_page(debug_client.post(f"/connections/{connection.code}/authorize/"))

    assert "_send" in page and "client_credentials" in page
    assert cc_client.client_secret not in page


def test_the_debug_page_of_a_crash_in_a_refresh_shows_no_token(
    debug_client: Client, settings: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    assert connection.client.grant_type == GrantType.AUTHORIZATION_CODE
    authorize(connection, fake_kroger)
    connection.refresh_from_db()
    del settings.KROGER_TIMEOUT_SECONDS

    page = debug_page(debug_client.post(f"/connections/{connection.code}/refresh/"))

    for secret in (CLIENT_SECRET, connection.refresh_token, connection.access_token):
        assert secret not in page


def test_the_debug_page_hides_a_new_service_key(
    debug_client: Client, connection: Connection, monkeypatch: Any
) -> None:
    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the page could not be drawn")

    monkeypatch.setattr(service_keys, "render", crash)
    page = debug_page(
        debug_client.post("/service-keys/new/", {"name": "Shop", "all_connections": "on"})
    )

    assert "service_key_create" in page
    found = re.search(r"kcp_[0-9a-f]{8}_[A-Za-z0-9_-]{20}", page)
    assert not found, page[found.start() - 700 : found.end()] if found else ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_development_server_logs_the_callback_without_its_query(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REQUESTS_"))}
    env.update(
        GOOD,
        DEBUG="true",
        SITE_URL=f"http://127.0.0.1:{port}",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SETTINGS_MODULE="connections_app.settings",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "server.log"
    code, state = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            for _ in range(100):
                try:
                    answer = requests.get(
                        f"http://127.0.0.1:{port}/oauth/callback/",
                        params={"code": code, "state": state},
                        timeout=2,
                    )
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            else:
                pytest.fail("the development server did not start")
            assert answer.status_code == 403  # not signed in
            time.sleep(0.3)
        finally:
            server.terminate()
            server.wait(timeout=10)
    text = log.read_text()
    assert "GET /oauth/callback/ HTTP/1.1" in text, text
    assert code not in text and state not in text
