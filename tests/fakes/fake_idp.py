"""The test identity provider (``tests/fakes/identity_provider``) in its own process."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import tls

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "idp-password-8Jq2"  # everyone's password at the test identity provider


class FakeIdentityProvider:
    client_id = "kroger-portal"

    def __init__(self, *redirect_uris: str) -> None:
        self.redirect_uris = redirect_uris
        self.client_secret = secrets.token_urlsafe(24)
        self.state = Path(tempfile.mkdtemp(prefix="portal-test-idp-"))
        self.origin = self.issuer = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self) -> FakeIdentityProvider:
        tls.export_server_cert(self.state)
        # A fresh RS256 signing key for every run.
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (self.state / "oidc-rs256.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._write_people({})
        env = {
            **os.environ,
            "IDP_STATE_DIR": str(self.state),
            "IDP_CLIENT_ID": self.client_id,
            "IDP_CLIENT_SECRET": self.client_secret,
            "IDP_REDIRECT_URIS": " ".join(self.redirect_uris),
            "PYTHONPATH": str(REPO),
        }
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.identity_provider.serve"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.isdigit():
            self._process.kill()
            _, errors = self._process.communicate(timeout=10)
            raise RuntimeError(f"the test identity provider did not start:\n{errors}")
        self.origin = f"https://127.0.0.1:{line}"
        self.issuer = f"{self.origin}/o"
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.communicate(timeout=10)
            self._process = None
        shutil.rmtree(self.state, ignore_errors=True)

    def set_person(
        self,
        username: str,
        *,
        email: str,
        password: str = PASSWORD,
        email_verified: bool = True,
        groups: Iterable[str] = (),
        amr: Iterable[str] = ("pwd",),
        signed_in_at: int | None = None,
    ) -> None:
        """Who may sign in, and what the ID token says of them; ``signed_in_at`` overrides its
        ``auth_time`` (an identity provider that reports an earlier sign-in)."""
        people = self._read_people()
        people[username] = {
            "password": password,
            "email": email,
            "email_verified": email_verified,
            "groups": list(groups),
            "amr": list(amr),
            "signed_in_at": signed_in_at,
        }
        self._write_people(people)

    def _read_people(self) -> dict[str, Any]:
        return json.loads((self.state / "people.json").read_text())

    def _write_people(self, people: dict[str, Any]) -> None:
        part = self.state / "people.json.part"
        part.write_text(json.dumps(people))
        part.replace(self.state / "people.json")
