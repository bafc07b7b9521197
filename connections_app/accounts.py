"""Sign-up rules: the first account administers the portal; later ones need an allowed domain."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest

from connections_app.access import VIEWERS


def portal_is_empty() -> bool:
    return not get_user_model().objects.exists()


def email_domain_allowed(email: str) -> bool:
    domain = email.rpartition("@")[2].lower()
    return domain in settings.ALLOWED_SIGNUP_DOMAINS


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return portal_is_empty() or bool(settings.ALLOWED_SIGNUP_DOMAINS)

    def clean_email(self, email: str) -> str:
        email = super().clean_email(email)
        if not portal_is_empty() and not email_domain_allowed(email):
            allowed = ", ".join(f"@{d}" for d in settings.ALLOWED_SIGNUP_DOMAINS)
            raise ValidationError(
                f"Sign-up is open only to {allowed} addresses. "
                "Use your work address, or ask an administrator to add you."
            )
        return email

    def save_user(self, request: HttpRequest, user: Any, form: Any, commit: bool = True) -> Any:
        user = super().save_user(request, user, form, commit=False)
        with transaction.atomic():
            # Sign-ups queue on the Viewers row, so two people signing up at once on an empty
            # portal cannot both see it empty and both become administrators.
            viewers = Group.objects.select_for_update().get(name=VIEWERS)
            first = portal_is_empty()
            if first:
                user.is_staff = True
                user.is_superuser = True
            user.save()
            if not first:
                user.groups.add(viewers)
        return user
