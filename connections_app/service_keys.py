"""The administrators' "Service keys" pages: list, create (the key is shown once), revoke.

Kept apart from ``views.py`` because these serve the API's credentials, not connections.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_safe

from connections_app import budgets
from connections_app.access import require_administrator
from connections_app.accounts import reauthenticate_first
from connections_app.models import Connection, ServiceKey
from connections_app.validators import name_validator
from connections_app.views import require_form_methods


class ServiceKeyForm(forms.Form):
    name = forms.CharField(
        label="Name",
        max_length=100,
        validators=[name_validator],
        help_text="The service that will use the key, e.g. Shopping list service.",
    )
    all_connections = forms.BooleanField(
        label="May use all connections, including ones added later", required=False
    )
    connections = forms.ModelMultipleChoiceField(
        label="Connections it may use",
        queryset=Connection.objects.order_by("name"),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    may_proxy = forms.BooleanField(
        label="May call Kroger through the portal (the proxy)",
        required=False,
        initial=True,
        help_text="The portal adds the token, renews it and keeps Kroger's daily budgets; the "
        "service never holds a Kroger token.",
    )
    may_fetch_tokens = forms.BooleanField(
        label="May fetch access tokens",
        required=False,
        help_text="The service then holds Kroger access tokens and calls Kroger itself: the "
        "portal cannot count or limit those calls.",
    )
    expires_in_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=3650,
        help_text="Leave blank for a key that works until it is revoked.",
        widget=forms.NumberInput(attrs={"class": "days"}),
    )

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if ServiceKey.objects.filter(name__iexact=name).exists():
            raise forms.ValidationError("A service key has this name already.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("all_connections") and not cleaned.get("connections"):
            self.add_error("connections", "Choose the connections the key may use, or all.")
        if not cleaned.get("may_proxy") and not cleaned.get("may_fetch_tokens"):
            self.add_error(
                "may_proxy",
                "Choose what the key may do: call Kroger through the portal, fetch access "
                "tokens, or both.",
            )
        return cleaned

    def create(self, user: Any) -> tuple[ServiceKey, str]:
        days = self.cleaned_data.get("expires_in_days")
        all_connections = bool(self.cleaned_data["all_connections"])
        return ServiceKey.create_key(
            name=self.cleaned_data["name"],
            connections=[] if all_connections else self.cleaned_data["connections"],
            all_connections=all_connections,
            may_fetch_tokens=bool(self.cleaned_data["may_fetch_tokens"]),
            may_proxy=bool(self.cleaned_data["may_proxy"]),
            expires_at=timezone.now() + timedelta(days=days) if days else None,
            created_by=user,
        )


def _get_key(code: uuid.UUID) -> ServiceKey:
    try:
        return ServiceKey.objects.get(code=code)
    except (ServiceKey.DoesNotExist, ValueError):
        raise Http404 from None


@login_required
@require_safe
def service_key_list(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user)
    keys = list(ServiceKey.objects.prefetch_related("connections").select_related("created_by"))
    calls = budgets.calls_today_by_key()
    for key in keys:
        key.calls_today = f"{calls.get(key.pk, 0):,}"  # type: ignore[attr-defined]
    return render(request, "connections/service_key_list.html", {"keys": keys})


@login_required
@require_form_methods
@reauthenticate_first
@never_cache
@sensitive_variables()  # the new key is in this frame and every one below it (the page's)
def service_key_create(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user)
    form = ServiceKeyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        key, raw = form.create(request.user)
        # Rendered here, not redirected: the key must not pass through messages or sessions.
        return render(request, "connections/service_key_created.html", {"key": key, "raw_key": raw})
    return render(request, "connections/service_key_form.html", {"form": form})


@login_required
@require_form_methods
@reauthenticate_first
def service_key_revoke(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    require_administrator(request.user)
    key = _get_key(code)
    if request.method == "POST":
        if key.revoke(actor=request.user):
            messages.success(request, f"Service key {key.name} is revoked: it no longer works.")
        return redirect("service_key_list")
    return render(request, "connections/service_key_revoke.html", {"key": key})
