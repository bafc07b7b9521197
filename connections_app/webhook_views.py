"""The administrators' "Webhooks" pages: endpoints, their signing secrets (shown once, rolled
with a day's overlap), a test event, and each endpoint's delivery log."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.core.validators import URLValidator
from django.db.models import Count, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST

from connections_app import webhooks
from connections_app.access import get_webhook_endpoint_for_admin, require_administrator
from connections_app.accounts import reauthenticate_first
from connections_app.models import DeliveryState, WebhookEndpoint, WebhookEvent

HTTP_URL_MESSAGE = "Enter an http:// or https:// URL."
# What an endpoint can ask for; webhook.test always reaches the endpoint it is sent to.
SUBSCRIBABLE = [(e.value, f"{e.value} — {e.label}") for e in WebhookEvent if e != "webhook.test"]


class WebhookEndpointForm(forms.ModelForm):  # type: ignore[type-arg]
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        validators=[
            URLValidator(schemes=["http", "https"], message=HTTP_URL_MESSAGE, code="scheme")
        ],
        help_text="Where the portal POSTs events, e.g. https://hooks.example.com/kroger.",
        widget=forms.URLInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    event_types = forms.MultipleChoiceField(
        label="Events",
        choices=SUBSCRIBABLE,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick none to receive every event, including ones added later.",
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "format", "enabled"]
        labels = {"format": "Format", "enabled": "Enabled"}
        help_texts = {
            "description": "What receives the events, e.g. On-call alerts.",
            "format": 'Slack posts {"text": …} that a Slack incoming webhook accepts; '
            "Standard Webhooks posts the signed event as JSON.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["event_types"].initial = self.instance.event_list
        if self.instance.pk is None:
            self.fields.pop("enabled", None)

    def clean_url(self) -> str:
        url: str = self.cleaned_data["url"].strip()
        host = (urlsplit(url).hostname or "").lower()
        if settings.WEBHOOK_ALLOW_PRIVATE:
            return url
        if host == "localhost" or host.endswith(".localhost"):
            raise forms.ValidationError(
                "This URL points at this machine (localhost). Use the receiver's public "
                "address, or set WEBHOOK_ALLOW_PRIVATE=true for receivers in your network."
            )
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return url  # a host name: its addresses are checked at each delivery
        if why := webhooks.address_refusal(address):
            raise forms.ValidationError(
                f"{address} is {why}: webhooks go only to public addresses. Use the "
                "receiver's public address, or set WEBHOOK_ALLOW_PRIVATE=true for receivers "
                "in your network."
            )
        return url

    def save(self, commit: bool = True) -> WebhookEndpoint:
        self.instance.events = " ".join(self.cleaned_data["event_types"])
        endpoint: WebhookEndpoint = super().save(commit)
        return endpoint


@login_required
def webhook_list(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user, "webhooks")
    endpoints = WebhookEndpoint.objects.annotate(
        pending=Count("deliveries", filter=Q(deliveries__state=DeliveryState.PENDING)),
        failed=Count("deliveries", filter=Q(deliveries__state=DeliveryState.FAILED)),
    )
    return render(request, "connections/webhook_list.html", {"endpoints": endpoints})


@login_required
@reauthenticate_first
@never_cache
def webhook_create(request: HttpRequest) -> HttpResponse:
    require_administrator(request.user, "webhooks")
    form = WebhookEndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        endpoint.created_by = request.user  # type: ignore[assignment]
        secret = endpoint.new_secret()
        endpoint.secret = secret
        endpoint.save()
        # Rendered here, not redirected: the secret must not pass through messages or sessions.
        return render(
            request,
            "connections/webhook_secret.html",
            {"endpoint": endpoint, "secret": secret, "created": True},
        )
    return render(request, "connections/webhook_form.html", {"form": form})


@login_required
def webhook_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_admin(request.user, code)
    log = Paginator(endpoint.log.select_related("delivery").order_by("-at", "-pk"), 50)
    failed = endpoint.deliveries.filter(state=DeliveryState.FAILED).order_by("-pk")[:20]
    pending = endpoint.deliveries.filter(state=DeliveryState.PENDING).order_by("pk")
    context = {
        "endpoint": endpoint,
        "page": log.get_page(request.GET.get("page")),
        "failed": failed,
        "pending_count": pending.count(),
        "next_pending": pending.first(),
        "log_days": settings.WEBHOOK_LOG_DAYS,
        "rolled_until": endpoint.previous_secret_until
        if len(endpoint.signing_secrets()) > 1
        else None,
    }
    return render(request, "connections/webhook_detail.html", context)


@login_required
@reauthenticate_first
def webhook_edit(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_admin(request.user, code)
    was_enabled = endpoint.enabled
    form = WebhookEndpointForm(request.POST or None, instance=endpoint)
    if request.method == "POST" and form.is_valid():
        endpoint = form.save(commit=False)
        if was_enabled and not endpoint.enabled:
            endpoint.save()
            webhooks.disable(endpoint, "Disabled by an administrator.")
        else:
            if endpoint.enabled:
                endpoint.disabled_reason = ""
                endpoint.failing_since = None
            endpoint.save()
        messages.success(request, f"Webhook endpoint {endpoint.url} saved.")
        return redirect("webhook_detail", code=endpoint.code)
    return render(request, "connections/webhook_form.html", {"form": form, "endpoint": endpoint})


@login_required
@reauthenticate_first
@never_cache
def webhook_roll_secret(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_admin(request.user, code)
    if request.method == "POST":
        secret = endpoint.roll_secret()
        return render(
            request,
            "connections/webhook_secret.html",
            {"endpoint": endpoint, "secret": secret, "created": False},
        )
    return render(request, "connections/webhook_roll_secret.html", {"endpoint": endpoint})


@login_required
@require_POST
def webhook_test(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_admin(request.user, code)
    if not endpoint.enabled:
        messages.error(request, "This endpoint is disabled: enable it (Edit) to send events.")
        return redirect("webhook_detail", code=endpoint.code)
    delivery = webhooks.send_test_event(endpoint, actor=request.user)
    if delivery.state == DeliveryState.DELIVERED:
        messages.success(
            request,
            f"Test event delivered: the endpoint answered HTTP {delivery.last_status_code}.",
        )
    elif delivery.attempts:
        messages.error(
            request,
            f"Test event not delivered ({delivery.last_error}). The portal retries it; the "
            "delivery log below shows each attempt.",
        )
    else:
        messages.warning(
            request,
            "Test event queued behind earlier deliveries that are waiting to be retried; it is "
            "sent in order after them.",
        )
    return redirect("webhook_detail", code=endpoint.code)


@login_required
@reauthenticate_first
def webhook_delete(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    endpoint = get_webhook_endpoint_for_admin(request.user, code)
    if request.method == "POST":
        url = endpoint.url
        endpoint.delete()
        messages.success(request, f"Webhook endpoint {url} deleted; it receives nothing more.")
        return redirect("webhook_list")
    return render(request, "connections/webhook_confirm_delete.html", {"endpoint": endpoint})
