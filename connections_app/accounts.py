"""Who may have an account and how they sign in.

The first account administers the portal; later password sign-ups need an allowed domain. Team
SSO (one OpenID Connect app, ``provider_id`` ``sso``) creates an account only for an address the
identity provider has verified (and, with ``ALLOWED_SIGNUP_DOMAINS``, in one of those domains),
links an existing account with that address, and, when ``SSO_OIDC_*_GROUPS`` are set, sets the
person's role from the ``groups`` claim at every SSO sign-in.

A password sign-up is decided inside one locked transaction (``signup`` below), so people who
sign up at the same moment on an empty portal cannot all see it empty: one becomes the
administrator, and the others meet the domain rule like everyone after them.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from allauth.account import app_settings as account_settings
from allauth.account import forms, stages
from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.decorators import reauthentication_required
from allauth.account.internal.flows.login import (
    get_authentication_records,
    record_authentication,
)
from allauth.account.internal.flows.reauthentication import (
    STATE_SESSION_KEY,
    get_reauthentication_flows,
)
from allauth.account.models import EmailAddress
from allauth.account.views import SignupView
from allauth.core import context
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.core.internal.httpkit import clean_client_ip, deserialize_request, get_client_ip
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialAccount
from allauth.usersessions.adapter import DefaultUserSessionsAdapter
from allauth.usersessions.models import UserSession
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured, PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import resolve, reverse

from connections_app.access import EDITORS, VIEWERS, role_of
from connections_app.models import AuditAction, AuditEvent

# Set at an SSO sign-in whose identity provider checked a second factor (``amr`` has ``mfa``).
IDP_MFA_SESSION_KEY = "portal.mfa_by_identity_provider"
# Marks the identity provider round trip that confirms it is the signed-in person (its state).
REAUTHENTICATE_STATE_KEY = "portal_reauthenticate"
SSO_PROVIDER_ID = "sso"

logger = logging.getLogger(__name__)


def portal_is_empty() -> bool:
    return not get_user_model().objects.exists()


def email_domain_allowed(email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    return domain in settings.ALLOWED_SIGNUP_DOMAINS


def password_sign_in_allowed(user: Any) -> bool:
    """With ``PASSWORD_SIGN_IN=false`` only SSO signs people in, except superusers when
    ``BREAK_GLASS_PASSWORD_SIGN_IN=true`` (for when the identity provider is down)."""
    if settings.PASSWORD_SIGN_IN:
        return True
    return bool(settings.BREAK_GLASS_PASSWORD_SIGN_IN and user.is_superuser)


def enrol(user: Any, save: Any) -> None:
    """Save a new account: the first one administers the portal, later ones are Viewers.

    Sign-ups queue on the Viewers row, so two people signing up at once on an empty portal
    cannot both see it empty and both become administrators. ``save`` stores the user."""
    with transaction.atomic():
        viewers = Group.objects.select_for_update().get(name=VIEWERS)
        first = portal_is_empty()
        if first:
            user.is_staff = True
            user.is_superuser = True
        save()
        if not first:
            user.groups.add(viewers)


_allauth_signup = SignupView.as_view()


def signup(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """allauth's sign-up page, with each submission queued on the Viewers row.

    The form's checks (is the portal empty? is the domain allowed?) and the save then see the
    same portal: without the lock, two sign-ups could both pass the checks of an empty portal
    and the second would join as a member whatever its domain.
    """
    if request.method != "POST":
        return _allauth_signup(request, *args, **kwargs)
    with transaction.atomic():
        Group.objects.select_for_update().get(name=VIEWERS)
        return _allauth_signup(request, *args, **kwargs)


class SignupForm(forms.SignupForm):
    def clean_email(self) -> str:
        email: str = super().clean_email()
        if not portal_is_empty() and not email_domain_allowed(email):
            allowed = ", ".join(f"@{d}" for d in settings.ALLOWED_SIGNUP_DOMAINS)
            raise ValidationError(
                f"Sign-up is open only to {allowed} addresses. "
                "Use your work address, or ask an administrator to add you."
            )
        return email


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        if not settings.PASSWORD_SIGN_IN:
            return False
        return portal_is_empty() or bool(settings.ALLOWED_SIGNUP_DOMAINS)

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        user = super().save_user(request, user, form, commit=False)
        enrol(user, user.save)
        return user

    def get_client_ip(self, request: HttpRequest) -> str:
        """The client's address as the trusted proxies report it (``TRUSTED_PROXY_COUNT``
        entries from the end of X-Forwarded-For, or ``TRUSTED_CLIENT_IP_HEADER``), counted by
        the sign-in limits and shown on the Sessions page.

        A request that did not come through those proxies (fewer X-Forwarded-For entries than
        proxies, or no valid address in the header) has no entry a proxy vouches for: it gets
        the address that connected, which no client can choose. allauth itself would answer
        500 (ImproperlyConfigured) or 403."""
        try:
            address = get_client_ip(request)
        except ImproperlyConfigured:
            address = None
        if address:
            return address
        connected = clean_client_ip(str(request.META.get("REMOTE_ADDR") or ""))
        if not connected:
            raise PermissionDenied("Unable to determine client IP address")
        logger.warning(
            "A request to %s did not come through the trusted proxies (TRUSTED_PROXY_COUNT=%s, "
            "TRUSTED_CLIENT_IP_HEADER=%s): counting it from the address that connected, %s",
            request.path,
            settings.ALLAUTH_TRUSTED_PROXY_COUNT,
            settings.ALLAUTH_TRUSTED_CLIENT_IP_HEADER or "unset",
            connected,
        )
        return connected

    def pre_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse | None:
        via_sso = bool((kwargs.get("signal_kwargs") or {}).get("sociallogin"))
        if not via_sso and not password_sign_in_allowed(user):
            return refuse(
                request,
                "Password sign-in is off",
                f"This portal signs people in through {settings.SSO_OIDC_NAME}. "
                f"Use “Sign in with {settings.SSO_OIDC_NAME}”.",
            )
        return super().pre_login(request, user, **kwargs)

    def post_login(self, request: HttpRequest, user: Any, **kwargs: Any) -> HttpResponse:
        sociallogin = (kwargs.get("signal_kwargs") or {}).get("sociallogin")
        request.session[IDP_MFA_SESSION_KEY] = bool(sociallogin and sso_reports_mfa(sociallogin))
        response: HttpResponse = super().post_login(request, user, **kwargs)
        return response

    def is_reauthentication_required(self, *, app: str, **kwargs: Any) -> bool:
        """allauth asks people to confirm it is them (password, or a second factor) before
        sensitive changes. Someone who signed in through SSO and has neither has nothing to
        re-enter: for them a sign-in within the reauthentication timeout is that proof."""
        if not super().is_reauthentication_required(app=app, **kwargs):
            return False
        request = context.request
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or get_reauthentication_flows(user):
            return True
        records = get_authentication_records(request, user)
        timeout = account_settings.REAUTHENTICATION_TIMEOUT
        return not (records and time.time() - records[-1]["at"] < timeout)

    def get_reauthentication_methods(self, user: Any) -> list[dict[str, Any]]:
        """allauth's ways to confirm it is you, and signing in again at the identity provider
        for people who have an SSO account (the only way for those with no password and no
        second factor). Someone with no way at all is told how to get one, never a dead end."""
        methods: list[dict[str, Any]] = super().get_reauthentication_methods(user)
        if not user.is_authenticated:
            return methods
        if has_sso_account(user):
            again = {
                "id": "sso",
                "description": f"Sign in again with {settings.SSO_OIDC_NAME}",
                "url": reverse("reauthenticate_sso"),
            }
            return [*methods, again]
        if not methods:
            return [
                {
                    "id": "sign_in_again",
                    "description": "Sign in again",
                    "url": reverse("reauthenticate_sso"),
                }
            ]
        return methods

    def get_login_stages(self) -> list[str]:
        # The portal's own e-mail verification step (see EmailVerificationStage), and its own
        # second-factor step, which knows when the identity provider did that already.
        replaced = {
            "allauth.account.stages.EmailVerificationStage": (
                "connections_app.accounts.EmailVerificationStage"
            ),
            "allauth.mfa.stages.AuthenticateStage": "connections_app.mfa.AuthenticateStage",
        }
        return [replaced.get(stage, stage) for stage in super().get_login_stages()]


def reauthenticate_first(view: Any) -> Any:
    """allauth's "confirm it is you" (password, second factor or the identity provider) before
    a sensitive change: a client secret, a deletion or disconnection, a service key, a webhook
    endpoint."""
    return reauthentication_required(
        view, enabled=lambda request: settings.REAUTHENTICATE_SENSITIVE_CHANGES
    )


def has_sso_account(user: Any) -> bool:
    """Whether ``user`` has signed in through team SSO and SSO is configured, so that signing
    in again there can confirm it is them."""
    return bool(settings.SOCIALACCOUNT_PROVIDERS) and (
        SocialAccount.objects.filter(user=user, provider=SSO_PROVIDER_ID).exists()
    )


def confirm_reauthentication(request: HttpRequest, sociallogin: Any) -> HttpResponse:
    """The identity provider's answer to "sign in again": it counts as confirming it is you only
    for the SSO account of the person signed in here, and only when the identity provider says
    it checked them just now (``auth_time``, asked for with ``prompt=login``). Then the change
    that asked for it carries on, as after allauth's own password check."""
    user: Any = request.user
    name = settings.SSO_OIDC_NAME
    claims = claims_of(sociallogin)
    account = sociallogin.account
    if not (user.is_authenticated and account.pk is not None and account.user_id == user.pk):
        signed_in_as = claims.get("email") or "another account"
        return refuse(
            request,
            "That is not your account",
            f"You signed in at {name} as {signed_in_as}, not as {user.email}, so nothing "
            f"changed. Sign out of {name}, then try again and sign in there as yourself.",
            back=True,
        )
    auth_time = claims.get("auth_time")
    timeout = account_settings.REAUTHENTICATION_TIMEOUT
    if not isinstance(auth_time, int | float) or not -60 < time.time() - auth_time < timeout:
        return refuse(
            request,
            f"{name} did not ask you to sign in again",
            f"{name} did not say that it checked it is you just now, so nothing changed. Sign "
            f"out of the portal and sign in again with {name}: for five minutes after that, the "
            "portal does not ask again.",
            back=True,
        )
    apply_sso_role(user, claims)
    record_authentication(
        request,
        user,
        "socialaccount",
        reauthenticated=True,
        provider=account.provider,
        uid=account.uid,
    )
    return resume_request(request, sociallogin.state.get("next") or "/")


def resume_request(request: HttpRequest, next_url: str) -> HttpResponse:
    """Carry on with the request that asked to confirm it is you: replay it when it was a form
    (a POST that allauth kept in the session), or go back to the page."""
    suspended = request.session.pop(STATE_SESSION_KEY, None)
    if suspended and "request" in suspended:
        replay = deserialize_request(suspended["request"], request)
        if replay.path == next_url:
            match = resolve(replay.path_info)
            response: HttpResponse = match.func(replay, *match.args, **match.kwargs)
            return response
    return redirect(next_url)


def was_asked_to_verify(user: Any) -> bool:
    """Whether the account joined through the open sign-up by domain, the only way in that
    must prove the address. The first administrator and people added in the admin (who have
    no sign-up address record) were never asked, and keep signing in when
    ALLOWED_SIGNUP_DOMAINS is turned on."""
    if user is None or user.is_superuser:
        return False
    return EmailAddress.objects.filter(user=user).exists()


class EmailVerificationStage(stages.EmailVerificationStage):
    def handle(self) -> tuple[HttpResponse | None, bool]:
        if not self.login.signup and not was_asked_to_verify(self.login.user):
            return None, True
        response: tuple[HttpResponse | None, bool] = super().handle()
        return response


def refuse(request: HttpRequest, title: str, reason: str, *, back: bool = False) -> HttpResponse:
    """A page saying why, with a way on: back to sign-in, or (``back``) to the portal."""
    shown = {"title": title, "reason": reason, "back": back}
    return render(request, "account/sign_in_refused.html", shown, status=403)


def claims_of(sociallogin: Any) -> dict[str, Any]:
    """What the identity provider said about the person: the ID token's claims, overlaid by
    the userinfo answer (allauth keeps both in ``extra_data``)."""
    data = sociallogin.account.extra_data or {}
    claims: dict[str, Any] = {}
    for part in ("id_token", "userinfo"):
        if isinstance(data.get(part), dict):
            claims.update(data[part])
    return claims


def sso_groups(claims: dict[str, Any]) -> set[str]:
    groups = claims.get("groups") or []
    if isinstance(groups, str):
        groups = [groups]
    return {str(group) for group in groups}


def sso_reports_mfa(sociallogin: Any) -> bool:
    """The identity provider says it checked a second factor (``amr`` contains ``mfa``)."""
    amr = claims_of(sociallogin).get("amr") or []
    return "mfa" in (amr if isinstance(amr, list) else [amr])


def apply_sso_role(user: Any, claims: dict[str, Any]) -> None:
    """Set the role from the ``groups`` claim, for each of editor and administrator whose
    ``SSO_OIDC_*_GROUPS`` is set (demotion included), and record any change."""
    editor_groups = set(settings.SSO_OIDC_EDITORS_GROUPS)
    admin_groups = set(settings.SSO_OIDC_ADMINS_GROUPS)
    if not editor_groups and not admin_groups:
        return
    groups = sso_groups(claims)
    before = role_of(user)
    with transaction.atomic():
        if admin_groups:
            admin = bool(groups & admin_groups)
            user.is_superuser = user.is_staff = admin
            user.save(update_fields=["is_superuser", "is_staff"])
        viewers, editors = Group.objects.get(name=VIEWERS), Group.objects.get(name=EDITORS)
        user.groups.add(viewers)
        if editor_groups:
            if groups & editor_groups:
                user.groups.add(editors)
            else:
                user.groups.remove(editors)
        # Permissions are cached per instance: the new role counts from this request on.
        for cache in ("_perm_cache", "_user_perm_cache", "_group_perm_cache"):
            user.__dict__.pop(cache, None)
        after = role_of(user)
        if after != before:
            AuditEvent.record(
                AuditAction.ROLE_CHANGED,
                actor=user,
                subject=user.email,
                detail=f"{before or 'No role'} → {after or 'No role'}, "
                f"from the groups claim of {settings.SSO_OIDC_NAME}",
            )


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def pre_social_login(self, request: HttpRequest, sociallogin: Any) -> None:
        """Runs after the identity provider answered and allauth looked the person up."""
        if sociallogin.state.get(REAUTHENTICATE_STATE_KEY):
            raise ImmediateHttpResponse(confirm_reauthentication(request, sociallogin))
        if sociallogin.is_existing:
            apply_sso_role(sociallogin.user, claims_of(sociallogin))
            return
        claims = claims_of(sociallogin)
        email = str(claims.get("email") or "")
        if not email or not _is_true(claims.get("email_verified")):
            raise ImmediateHttpResponse(
                refuse(
                    request,
                    "Your address is not verified",
                    f"{settings.SSO_OIDC_NAME} did not confirm that {email or 'your address'} "
                    "is yours, so the portal cannot make an account for it. Verify the address "
                    f"at {settings.SSO_OIDC_NAME}, or ask an administrator to add you.",
                )
            )
        if settings.ALLOWED_SIGNUP_DOMAINS and not email_domain_allowed(email):
            allowed = ", ".join(f"@{d}" for d in settings.ALLOWED_SIGNUP_DOMAINS)
            raise ImmediateHttpResponse(
                refuse(
                    request,
                    "This address cannot join the portal",
                    f"New accounts are open only to {allowed} addresses, and {email} is not "
                    "one. Sign in with your work account, or ask an administrator to add you.",
                )
            )

    def is_open_for_signup(self, request: HttpRequest, sociallogin: Any) -> bool:
        return True  # pre_social_login has already refused whoever may not join

    def save_user(self, request: HttpRequest, sociallogin: Any, form: Any = None) -> Any:
        user = sociallogin.user
        user.set_unusable_password()
        get_adapter().populate_username(request, user)
        enrol(user, lambda: sociallogin.save(request))
        apply_sso_role(user, claims_of(sociallogin))
        return user


def _is_true(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def get_adapter() -> DefaultAccountAdapter:
    from allauth.account.adapter import get_adapter as account_adapter

    return account_adapter()


class UserSessionsAdapter(DefaultUserSessionsAdapter):
    def end_sessions(self, sessions: Any) -> None:
        """Sign out the given sessions ("Sign out the other sessions"), each in the audit log."""
        for session in sessions:
            AuditEvent.record(
                AuditAction.SESSION_ENDED,
                actor=session.user,
                subject=session.user.email,
                detail=f"Signed out the session from {session.ip} ({session.user_agent[:120]})",
            )
        super().end_sessions(sessions)


def end_all_sessions(user: Any, *, by: Any) -> int:
    """End every session of ``user`` at once (their account was deactivated); how many."""
    sessions = list(UserSession.objects.filter(user=user))
    for session in sessions:
        session.end()
    AuditEvent.record(
        AuditAction.SESSION_ENDED,
        actor=by,
        subject=user.email,
        detail=f"Account deactivated: {len(sessions)} session(s) ended",
    )
    return len(sessions)
