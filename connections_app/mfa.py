"""Second factors (allauth.mfa): their secrets on the portal's key ring, and who must have one.

allauth stores a TOTP key (``data["secret"]``) and a recovery-code seed (``data["seed"]``) in
``Authenticator.data`` and passes them through the MFA adapter's ``encrypt``/``decrypt``. Those
hooks see only the text, not the row, so the binding happens around them:

- ``encrypt`` seals a new secret under the key ring as *unbound* (associated data that no
  stored row uses), so even an unsaved value is never plaintext;
- before an authenticator is saved, ``pre_save`` re-seals each unbound secret for its row:
  ``allauth.mfa.authenticator.<field>:<user id>:<type>`` (one TOTP and one recovery-code
  authenticator per person, so user and type name the row);
- when a row is loaded, ``post_init`` marks each secret with that same associated data, which
  ``decrypt`` uses. A ciphertext copied into another person's row does not decrypt.

``rotate_encryption_keys`` re-encrypts these secrets with the rest (``rotate_secrets``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from allauth.mfa.stages import AuthenticateStage as AllauthAuthenticateStage
from django.conf import settings
from django.db.models.signals import post_init, pre_save
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from connections_app.access import EDITORS
from connections_app.accounts import IDP_MFA_SESSION_KEY, sso_reports_mfa
from connections_app.crypto import get_key_ring, key_id_of

SECRET_FIELDS = ("secret", "seed")
UNBOUND = "allauth.mfa.authenticator:unsaved"


class SealedSecret(str):
    """A stored MFA secret, carrying the associated data of the row it was loaded from."""

    associated_data: str

    def __new__(cls, token: str, associated_data: str) -> SealedSecret:
        value = super().__new__(cls, token)
        value.associated_data = associated_data
        return value

    def __repr__(self) -> str:
        return "SealedSecret(…)"


def associated_data(authenticator: Authenticator, field: str) -> str:
    return f"allauth.mfa.authenticator.{field}:{authenticator.user_id}:{authenticator.type}"


class MFAAdapter(DefaultMFAAdapter):
    def encrypt(self, text: str) -> str:
        return get_key_ring().encrypt(text, UNBOUND)

    def decrypt(self, encrypted_text: str) -> str:
        bound = getattr(encrypted_text, "associated_data", UNBOUND)
        return get_key_ring().decrypt(encrypted_text, bound)


@receiver(pre_save, sender=Authenticator)
def _bind_secrets_to_row(sender: Any, instance: Authenticator, **kwargs: Any) -> None:
    ring = get_key_ring()
    for field in SECRET_FIELDS:
        value = instance.data.get(field) if isinstance(instance.data, dict) else None
        if not value:
            continue
        bound = associated_data(instance, field)
        if getattr(value, "associated_data", UNBOUND) == UNBOUND:
            value = ring.encrypt(ring.decrypt(value, UNBOUND), bound)
        instance.data[field] = SealedSecret(value, bound)


@receiver(post_init, sender=Authenticator)
def _mark_loaded_secrets(sender: Any, instance: Authenticator, **kwargs: Any) -> None:
    data = instance.__dict__.get("data")
    if instance.pk is None or not isinstance(data, dict):
        return
    for field in SECRET_FIELDS:
        if data.get(field):
            data[field] = SealedSecret(data[field], associated_data(instance, field))


def count_keys() -> Counter[str]:
    counts: Counter[str] = Counter()
    for data in Authenticator.objects.values_list("data", flat=True):
        counts.update(key_id_of(data[field]) for field in SECRET_FIELDS if data.get(field))
    return counts


def rotate_secrets() -> int:
    """Re-encrypt every MFA secret under the primary key; the number of rows changed. Run it
    inside the caller's transaction (a DecryptionError leaves everything as it was)."""
    ring = get_key_ring()
    changed = 0
    for authenticator in Authenticator.objects.select_for_update().order_by("pk").iterator():
        stale = [f for f in SECRET_FIELDS if ring.needs_rotation(authenticator.data.get(f, ""))]
        for field in stale:
            sealed = authenticator.data[field]
            plaintext = ring.decrypt(sealed, sealed.associated_data)
            authenticator.data[field] = SealedSecret(
                ring.encrypt(plaintext, sealed.associated_data), sealed.associated_data
            )
        if stale:
            authenticator.save(update_fields=["data"])
            changed += 1
    return changed


# --- Who must have a second factor ----------------------------------------------------------

# The identity provider's callback too: confirming it is you there may come before the setup.
MFA_SETUP_PREFIXES = (
    "/accounts/2fa/",
    "/accounts/reauthenticate/",
    "/accounts/oidc/",
    "/accounts/logout/",
)


def must_have_mfa(user: Any) -> bool:
    required = settings.MFA_REQUIRED
    if required == "all":
        return True
    if required == "editors":
        return bool(user.is_superuser or user.groups.filter(name=EDITORS).exists())
    return False


def has_mfa(request: HttpRequest) -> bool:
    if request.session.get(IDP_MFA_SESSION_KEY):
        return True
    return Authenticator.objects.filter(
        user_id=request.user.pk,
        type__in=[Authenticator.Type.TOTP, Authenticator.Type.WEBAUTHN],
    ).exists()


class MFARequiredMiddleware:
    """Someone who must have a second factor and has none reaches nothing but its setup (and
    signing out) until it is done, the admin included."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            user is not None
            and user.is_authenticated
            and not request.path.startswith(MFA_SETUP_PREFIXES)
            and not request.path.startswith(settings.STATIC_URL)
            and must_have_mfa(user)
            and not has_mfa(request)
        ):
            return redirect("mfa_setup_required")
        response: HttpResponse = self.get_response(request)
        return response


class AuthenticateStage(AllauthAuthenticateStage):
    """allauth's "enter your code" step, skipped when the identity provider has already checked
    a second factor (its ``amr`` claim contains ``mfa``)."""

    def handle(self) -> tuple[Any, bool]:
        sociallogin = (self.login.signal_kwargs or {}).get("sociallogin")
        if sociallogin is not None and sso_reports_mfa(sociallogin):
            return None, True
        return super().handle()
