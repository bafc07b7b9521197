"""Can ``ENCRYPTION_KEYS`` read the secrets stored in the database?

A restored backup without its keys, a key removed too early or a regenerated ``.env`` leave the
portal running with secrets it cannot decrypt. This looks for that cheaply (a few queries,
one decryption per field and key), so that the start-up checks, ``/healthz`` and the worker
can say so in one line naming ``ENCRYPTION_KEYS`` instead of failing on every page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.apps import apps
from django.core import checks
from django.db import DatabaseError
from django.db.models import Q

from connections_app.crypto import FORMAT_VERSION, DecryptionError, get_key_ring
from connections_app.fields import Ciphertext, EncryptedTextField

# Values that live minutes (a PKCE verifier) do not make the key ring unhealthy.
TRANSIENT_MODELS = frozenset({"authorizationattempt"})
CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class Problem:
    what: str  # e.g. "connection tokens"
    key_id: str
    missing: bool  # the key id is not in ENCRYPTION_KEYS (else: the key there is another one)


def _fields() -> list[tuple[Any, EncryptedTextField]]:
    return [
        (model, field)
        for model in apps.get_app_config("connections_app").get_models()
        if model._meta.model_name not in TRANSIENT_MODELS
        for field in model._meta.concrete_fields
        if isinstance(field, EncryptedTextField)
    ]


def _label(model: Any, field: EncryptedTextField) -> str:
    if field.name.endswith("_token"):
        return f"{model._meta.verbose_name} tokens"
    return f"{field.verbose_name}s"


def find_problems() -> list[Problem]:
    """What the key ring cannot read, one entry per kind of secret and key id."""
    ring = get_key_ring()
    problems: list[Problem] = []
    for model, field in _fields():
        what = _label(model, field)
        stored = model._default_manager.exclude(**{field.attname: ""})
        prefix = {kid: Ciphertext(f"{FORMAT_VERSION}:{kid}:") for kid in ring.key_ids}
        known = reduce(or_, [Q(**{f"{field.attname}__startswith": p}) for p in prefix.values()])
        for value in stored.exclude(known).values_list(field.attname, flat=True)[:1]:
            key_id = str(value).split(":", 2)[1] if str(value).count(":") >= 2 else "?"
            problems.append(Problem(what, key_id, missing=True))
        for key_id, start in prefix.items():
            sample = stored.filter(**{f"{field.attname}__startswith": start}).order_by("-pk")
            row = sample.first()
            if row is None:
                continue
            try:
                getattr(row, field.attname)
            except DecryptionError:
                problems.append(Problem(what, key_id, missing=False))
    return problems


def describe(problems: list[Problem]) -> str:
    """One line for logs, pages and /healthz; empty when every stored secret is readable."""
    if not problems:
        return ""
    parts = []
    for missing in (True, False):
        for key_id in dict.fromkeys(p.key_id for p in problems if p.missing == missing):
            whats = " and ".join(
                dict.fromkeys(
                    p.what for p in problems if (p.key_id, p.missing) == (key_id, missing)
                )
            )
            if missing:
                parts.append(f"{whats} were encrypted with key '{key_id}', which is not in it")
            else:
                parts.append(f"its key '{key_id}' does not decrypt the {whats}")
    return (
        "ENCRYPTION_KEYS cannot read stored secrets: "
        + "; ".join(parts)
        + ". Restore the ENCRYPTION_KEYS they were encrypted with, or enter each client "
        "secret again and reauthorize each connection (README: Encryption keys)."
    )


_cached: tuple[float, str, str] | None = None  # (when, ENCRYPTION_KEYS, line)


def unreadable_secrets(*, fresh: bool = False) -> str:
    """``describe(find_problems())``, remembered for a minute (``/healthz`` is polled)."""
    global _cached
    from django.conf import settings

    now = time.monotonic()
    if (
        not fresh
        and _cached is not None
        and _cached[1] == settings.ENCRYPTION_KEYS
        and now - _cached[0] < CACHE_SECONDS
    ):
        return _cached[2]
    line = describe(find_problems())
    _cached = (now, settings.ENCRYPTION_KEYS, line)
    return line


def check_key_ring(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """A start-up check (runserver, migrate, the worker): a warning, not an error, so that the
    portal still starts and people can enter the secrets again."""
    try:
        line = unreadable_secrets(fresh=True)
    except DatabaseError:
        return []  # no database yet (or not migrated): nothing stored to read
    if not line:
        return []
    return [checks.Warning(line, id="connections_app.W001")]
