"""The OAuth library's loggers stay at WARNING whatever LOG_LEVEL says: at DEBUG,
requests-oauthlib and oauthlib print request bodies, codes, verifiers and tokens."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from connections_app.models import Connection, ConnectionStatus
from tests.conftest import CLIENT_SECRET
from tests.fakes.fake_kroger import FakeKroger
from tests.test_oauth_callback import finish
from tests.test_settings import GOOD

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
SCOPES = {"product.compact", "cart.basic:write"}


@pytest.fixture
def fake(fake_kroger: FakeKroger, oauth_client: Any) -> FakeKroger:
    fake_kroger.register_client(oauth_client.client_id, CLIENT_SECRET, SCOPES)
    return fake_kroger


def full_flow(client: Any, owner: Any, connection: Connection, fake: FakeKroger) -> list[str]:
    """Consent, callback and a refresh through the portal's pages; every secret involved."""
    client.force_login(owner)
    consent_page = client.post(f"/connections/{connection.code}/authorize/")["Location"]
    back = fake.consent(consent_page)
    assert finish(client, back[back.index("/oauth/callback/") :]).status_code == 302
    assert client.post(f"/connections/{connection.code}/refresh/").status_code == 302
    connection.refresh_from_db()
    assert connection.status == ConnectionStatus.ONLINE
    [exchange] = fake.token_calls_for("authorization_code")
    assert len(fake.token_calls_for("refresh_token")) == 1
    # issued: the code, two access tokens and two refresh tokens
    return [CLIENT_SECRET, exchange["code_verifier"], *fake.issued]


def test_a_full_flow_at_debug_logs_no_secret(
    client: Any,
    owner: Any,
    connection: Connection,
    fake: FakeKroger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger, as LOG_LEVEL=DEBUG sets it

    secrets = full_flow(client, owner, connection, fake)

    assert len(secrets) == 7
    assert logging.getLogger("connections_app.kroger").isEnabledFor(logging.DEBUG)
    for secret in secrets:
        assert secret not in caplog.text
    library = {"oauthlib", "requests_oauthlib"}
    assert not [record for record in caplog.records if record.name.split(".")[0] in library]


def test_the_same_flow_would_log_secrets_if_the_library_loggers_were_let_through(
    client: Any,
    owner: Any,
    connection: Connection,
    fake: FakeKroger,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Why the pin matters, and proof that the test above can fail."""
    caplog.set_level(logging.DEBUG, logger="requests_oauthlib")
    caplog.set_level(logging.DEBUG, logger="oauthlib")

    secrets = full_flow(client, owner, connection, fake)

    assert any(secret in caplog.text for secret in secrets)


def test_log_level_debug_leaves_the_oauth_loggers_at_warning() -> None:
    script = (
        "import logging, django; django.setup(); "
        "print(logging.getLogger().level, "
        "logging.getLogger('oauthlib').getEffectiveLevel(), "
        "logging.getLogger('requests_oauthlib').getEffectiveLevel(), "
        "logging.getLogger('requests_oauthlib.oauth2_session').getEffectiveLevel())"
    )
    env = {k: v for k, v in os.environ.items() if k not in GOOD}
    env.update(GOOD, LOG_LEVEL="DEBUG", DJANGO_SETTINGS_MODULE="connections_app.settings")
    env.pop("DATABASE_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    levels = [int(level) for level in result.stdout.split()]
    assert levels == [logging.DEBUG, logging.WARNING, logging.WARNING, logging.WARNING]
