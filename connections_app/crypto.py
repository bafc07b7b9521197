"""The key ring: authenticated encryption of secrets at rest.

Every stored secret is ``v1:<key id>:<base64url(nonce || AES-256-GCM ciphertext+tag)>``.
The associated data binds a value to the model, field and row it was written for, so a
ciphertext copied into another row or field fails to decrypt instead of being accepted.

``ENCRYPTION_KEYS`` is a comma-separated list of ``<key id>:<base64url 32-byte key>``; the
first key encrypts new values, the others only decrypt (they are kept while a rotation is
under way). Nothing outside this module handles key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

FORMAT_VERSION = "v1"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
NONCE_BYTES = 12
KEY_BYTES = 32


class KeyConfigError(ValueError):
    """``ENCRYPTION_KEYS`` cannot be used as it is."""


class DecryptionError(Exception):
    """A stored value could not be decrypted; the message names the key id, never the value."""


@dataclass(frozen=True)
class Key:
    key_id: str
    material: bytes

    def __repr__(self) -> str:  # never show key material in tracebacks or shells
        return f"Key({self.key_id!r})"


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii"))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def parse_keys(value: str) -> list[Key]:
    """Parse ``ENCRYPTION_KEYS``; raise KeyConfigError with a message safe to print."""
    entries = [part.strip() for part in value.split(",") if part.strip()]
    if not entries:
        raise KeyConfigError("ENCRYPTION_KEYS is empty: run `manage.py generate_encryption_key`")
    keys: list[Key] = []
    for position, entry in enumerate(entries, start=1):
        key_id, sep, encoded = entry.partition(":")
        if not sep or not KEY_ID_RE.match(key_id):
            raise KeyConfigError(
                f"ENCRYPTION_KEYS entry {position} must look like '<key id>:<base64 key>' "
                "with a key id of letters, digits, '-' or '_'"
            )
        try:
            material = _b64decode(encoded.strip())
        except (binascii.Error, ValueError):
            raise KeyConfigError(f"ENCRYPTION_KEYS key '{key_id}' is not valid base64") from None
        if len(material) != KEY_BYTES:
            raise KeyConfigError(
                f"ENCRYPTION_KEYS key '{key_id}' must be {KEY_BYTES} bytes, not {len(material)}"
            )
        if any(k.key_id == key_id for k in keys):
            raise KeyConfigError(f"ENCRYPTION_KEYS names key id '{key_id}' twice")
        keys.append(Key(key_id, material))
    return keys


def generate_key(key_id: str | None = None) -> str:
    """A new ``ENCRYPTION_KEYS`` entry: ``<key id>:<base64url key>``."""
    key_id = key_id or "k" + secrets.token_hex(4)
    if not KEY_ID_RE.match(key_id):
        raise KeyConfigError("a key id is 1-32 letters, digits, '-' or '_'")
    return f"{key_id}:{_b64encode(os.urandom(KEY_BYTES))}"


class KeyRing:
    def __init__(self, keys: list[Key]) -> None:
        if not keys:
            raise KeyConfigError("the key ring needs at least one key")
        self.primary = keys[0]
        self._by_id = {k.key_id: k for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return list(self._by_id)

    def encrypt(self, plaintext: str, associated_data: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(self.primary.material).encrypt(
            nonce, plaintext.encode("utf-8"), associated_data.encode("utf-8")
        )
        return f"{FORMAT_VERSION}:{self.primary.key_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, associated_data: str) -> str:
        version, key_id, payload = split_token(token)
        if version != FORMAT_VERSION:
            raise DecryptionError(f"unknown encrypted value format '{version}'")
        key = self._by_id.get(key_id)
        if key is None:
            raise DecryptionError(
                f"value was encrypted with key '{key_id}', which is not in ENCRYPTION_KEYS"
            )
        try:
            raw = _b64decode(payload)
            plaintext = AESGCM(key.material).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated_data.encode("utf-8")
            )
        except (InvalidTag, ValueError, binascii.Error):
            raise DecryptionError(
                f"value does not decrypt with key '{key_id}': the key is wrong, or the value "
                "was altered or copied from another record"
            ) from None
        return plaintext.decode("utf-8")

    def needs_rotation(self, token: str) -> bool:
        return bool(token) and key_id_of(token) != self.primary.key_id


def split_token(token: str) -> tuple[str, str, str]:
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise DecryptionError("stored value is not an encrypted value")
    return parts[0], parts[1], parts[2]


def key_id_of(token: str) -> str:
    return split_token(token)[1]


@lru_cache(maxsize=8)
def _ring_for(raw: str) -> KeyRing:
    return KeyRing(parse_keys(raw))


def get_key_ring() -> KeyRing:
    """The ring configured in settings (cached per value, so tests may override settings)."""
    from django.conf import settings

    return _ring_for(settings.ENCRYPTION_KEYS)


def fingerprint(secret: str) -> str:
    """A short, keyed fingerprint that tells two secrets apart without revealing either."""
    from django.conf import settings

    digest = hmac.new(
        settings.SECRET_KEY.encode(), b"fingerprint:" + secret.encode("utf-8"), hashlib.sha256
    )
    return digest.hexdigest()[:8]
