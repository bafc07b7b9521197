"""What the in-process scenarios (``bench/keep_alive.py``, ``bench/scale.py``) stand on: the
portal's own settings on the throwaway PostgreSQL that ``bench/run`` started (through
``bin/with-postgres``), migrated, against a fake Kroger over https with a throwaway CA."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def configure(db_url: str, kroger_url: str, **extra: str) -> None:
    """The environment the portal's settings read, with ``extra`` variables on top."""
    from connections_app.crypto import generate_key

    os.environ.update(
        {
            "PORTAL_SKIP_DOTENV": "1",
            "DJANGO_SETTINGS_MODULE": "connections_app.settings",
            "DATABASE_URL": db_url,
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ENCRYPTION_KEYS": generate_key("bench"),
            "SITE_URL": "https://localhost",
            "KROGER_PRODUCTION_URL": kroger_url,
            "KROGER_CERTIFICATION_URL": kroger_url,
            "LOG_LEVEL": "ERROR",
            **extra,
        }
    )


@contextmanager
def portal_on_postgres(name: str, **extra: str) -> Iterator[tuple[Any, Path]]:
    """Django set up in this process and migrated, against a fake Kroger: yields the fake and
    a scratch folder, both gone afterwards. ``extra`` may name the scratch folder as
    ``{work}``."""
    sys.path.insert(0, str(ROOT))
    db_url = os.environ.get("TEST_DATABASE_URL")
    if not db_url:
        raise SystemExit(f"bench/{name}.py needs TEST_DATABASE_URL (run it via bench/run)")
    from tests.fakes import tls
    from tests.fakes.fake_kroger import FakeKroger

    work = Path(tempfile.mkdtemp(prefix=f"portal-bench-{name}-"))
    tls.trust_test_ca(work)
    fake = FakeKroger().start()
    try:
        configure(db_url, fake.url, **{k: v.format(work=work) for k, v in extra.items()})
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)  # a throwaway database of its own (bench/run)
        yield fake, work
    finally:
        fake.stop()
        shutil.rmtree(work, ignore_errors=True)


def registered_client(
    fake: Any, name: str, client_id: str, *, environment: str = "production", **fields: Any
) -> Any:
    """An authorization-code OAuthClient, registered with the fake Kroger (scope
    product.compact) under ``client_id`` with a fresh secret."""
    from connections_app.models import GrantType, OAuthClient

    secret = secrets.token_urlsafe(16)
    fake.register_client(client_id, secret, {"product.compact"})
    return OAuthClient.objects.create(
        name=name,
        environment=environment,
        grant_type=GrantType.AUTHORIZATION_CODE,
        client_id=client_id,
        client_secret=secret,
        **fields,
    )
