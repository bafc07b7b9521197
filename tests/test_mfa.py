"""Second factors: TOTP, recovery codes, their secrets on the key ring, and who must have one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import struct
import time
from typing import Any

import pytest
from allauth.mfa.models import Authenticator
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.db import connection as db

from connections_app.crypto import DecryptionError, generate_key
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def totp_code(secret: str, at: float | None = None) -> str:
    """RFC 6238 with SHA-1, 30-second steps and six digits, as authenticator apps compute it."""
    counter = int((time.time() if at is None else at) // 30)
    digest = hmac.new(base64.b32decode(secret), struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def sign_in_with_password(client: Any, user: Any) -> Any:
    return client.post("/accounts/login/", {"login": user.email, "password": PASSWORD})


def reauthenticate(client: Any) -> None:
    """Confirm it is me (allauth asks before every change to second factors)."""
    answer = client.post("/accounts/reauthenticate/", {"password": PASSWORD})
    assert answer.status_code == 302, answer.content


def enrol_totp(client: Any, user: Any) -> str:
    """Sign in, open the authenticator-app page, and confirm it with a code; the secret."""
    sign_in_with_password(client, user)
    reauthenticate(client)
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = page.context["form"].secret
    assert secret in page.content.decode()  # shown once, for typing into an app
    done = client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert done.status_code == 302, done.content
    return str(secret)


def recovery_seed(user: Any) -> str:
    from allauth.mfa.utils import decrypt

    row = Authenticator.objects.get(user=user, type=Authenticator.Type.RECOVERY_CODES)
    return decrypt(row.data["seed"])


def every_stored_value() -> str:
    """Every cell of every table, and every session's decoded contents, as one text."""
    parts: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            parts.extend(repr(row) for row in cursor.fetchall())
    for session in Session.objects.all():
        parts.append(json.dumps(session.get_decoded(), default=str))
    return "\n".join(parts)


def test_it_keeps_no_totp_secret_or_recovery_seed_in_any_table(client: Any, owner: Any) -> None:
    secret = enrol_totp(client, owner)
    seed = recovery_seed(owner)
    assert len(secret) >= 32 and len(seed) >= 40

    stored = every_stored_value()
    assert secret not in stored
    assert secret.lower() not in stored
    assert seed not in stored
    totp = Authenticator.objects.get(user=owner, type=Authenticator.Type.TOTP)
    assert totp.data["secret"].startswith("v1:")


def test_a_secret_copied_into_another_persons_row_does_not_decrypt(
    client: Any, owner: Any, teammate: Any
) -> None:
    enrol_totp(client, owner)
    stolen = Authenticator.objects.get(user=owner, type=Authenticator.Type.TOTP).data["secret"]
    Authenticator.objects.create(user=teammate, type=Authenticator.Type.RECOVERY_CODES, data={})
    Authenticator.objects.filter(user=teammate).update(
        type=Authenticator.Type.TOTP, data={"secret": str(stolen)}
    )
    copied = Authenticator.objects.get(user=teammate, type=Authenticator.Type.TOTP)
    with pytest.raises(DecryptionError):
        copied.wrap().validate_code("123456")


def test_rotate_encryption_keys_re_encrypts_mfa_secrets(
    client: Any, owner: Any, settings: Any, capsys: Any
) -> None:
    secret = enrol_totp(client, owner)
    old_key = settings.ENCRYPTION_KEYS
    settings.ENCRYPTION_KEYS = f"{generate_key('k2')},{old_key}"
    call_command("rotate_encryption_keys")
    assert "k2: 2" in capsys.readouterr().out
    for row in Authenticator.objects.filter(user=owner):
        assert row.data[{"totp": "secret", "recovery_codes": "seed"}[row.type]].startswith("v1:k2:")
    totp = Authenticator.objects.get(user=owner, type=Authenticator.Type.TOTP)
    assert totp.wrap().validate_code(totp_code(secret, time.time() + 30))


def test_sign_in_asks_for_the_authenticator_code(client: Any, owner: Any) -> None:
    secret = enrol_totp(client, owner)
    client.post("/accounts/logout/")
    answer = sign_in_with_password(client, owner)
    assert answer["Location"] == "/accounts/2fa/authenticate/"
    assert not client.get("/").wsgi_request.user.is_authenticated

    wrong = client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert "Incorrect code" in wrong.content.decode()
    right = client.post(
        "/accounts/2fa/authenticate/", {"code": totp_code(secret, time.time() + 30)}
    )
    assert right.status_code == 302
    assert client.get("/").wsgi_request.user == owner


def test_a_recovery_code_signs_in_once(client: Any, owner: Any) -> None:
    enrol_totp(client, owner)
    row = Authenticator.objects.get(user=owner, type=Authenticator.Type.RECOVERY_CODES)
    code = row.wrap().get_unused_codes()[0]
    client.post("/accounts/logout/")
    sign_in_with_password(client, owner)
    assert client.post("/accounts/2fa/authenticate/", {"code": code}).status_code == 302
    assert client.get("/").wsgi_request.user == owner

    client.post("/accounts/logout/")
    sign_in_with_password(client, owner)
    again = client.post("/accounts/2fa/authenticate/", {"code": code})
    assert "Incorrect code" in again.content.decode()
