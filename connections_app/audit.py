"""Sign-in events for the audit trail, from allauth's and Django's own signals.

Nothing a person typed is recorded: a failed sign-in names the account only when the address
belongs to one (so a password typed into the address field never reaches the log).
"""

from __future__ import annotations

from typing import Any

from allauth.account.signals import user_logged_in
from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out, user_login_failed
from django.dispatch import receiver

from connections_app.models import AuditAction, AuditEvent

FACTORS = {"totp": "authenticator app", "recovery_codes": "recovery codes", "webauthn": "passkey"}


def _factor(authenticator: Any) -> str:
    name = FACTORS.get(authenticator.type, authenticator.type)
    if authenticator.type == "webauthn":
        name = f"{name} “{authenticator.wrap().name}”"
    return name


@receiver(user_logged_in)
def _signed_in(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    sociallogin = kwargs.get("sociallogin")
    how = f"through {settings.SSO_OIDC_NAME} (SSO)" if sociallogin else "with a password"
    methods = request.session.get("account_authentication_methods", [])
    if any(method.get("passwordless") for method in methods):
        how = "with a passkey (no password)"
    elif any(method.get("method") == "mfa" for method in methods):
        how += " and a second factor"
    AuditEvent.record(
        AuditAction.SIGNED_IN, actor=user, subject=user.email, detail=f"Signed in {how}"
    )


@receiver(user_logged_out)
def _signed_out(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if user is not None:
        AuditEvent.record(AuditAction.SIGNED_OUT, actor=user, subject=user.email)


@receiver(user_login_failed)
def _sign_in_failed(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kw: Any
) -> None:
    typed = str(credentials.get("email") or credentials.get("username") or "")
    user = get_user_model().objects.filter(email__iexact=typed).first() if typed else None
    AuditEvent.record(
        AuditAction.SIGN_IN_FAILED,
        actor=user,
        actor_label="" if user else "unknown address",
        subject=user.email if user else "",
        detail="Wrong password" if user else "No account has that address",
    )


@receiver(authentication_failed)
def _second_factor_failed(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    AuditEvent.record(
        AuditAction.SIGN_IN_FAILED,
        actor=user,
        subject=user.email,
        detail=f"Wrong code for the {_factor(kwargs['authenticator'])}"
        if kwargs.get("authenticator")
        else "Wrong second-factor code",
    )


@receiver(authenticator_added)
def _factor_added(sender: Any, request: Any, user: Any, authenticator: Any, **kw: Any) -> None:
    AuditEvent.record(
        AuditAction.MFA_ADDED,
        actor=user,
        subject=user.email,
        detail=f"Added {_factor(authenticator)}",
    )


@receiver(authenticator_removed)
def _factor_removed(sender: Any, request: Any, user: Any, authenticator: Any, **kw: Any) -> None:
    AuditEvent.record(
        AuditAction.MFA_REMOVED,
        actor=user,
        subject=user.email,
        detail=f"Removed {_factor(authenticator)}",
    )
