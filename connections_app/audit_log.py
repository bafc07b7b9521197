"""The audit log page for administrators: filter, page through, export as CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, time
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from connections_app.access import ADMINISTRATORS, RoleRequired
from connections_app.models import AuditAction, AuditEvent, Connection

PAGE_SIZE = 50


class AuditFilter(forms.Form):
    person = forms.ModelChoiceField(
        queryset=get_user_model().objects.order_by("email"),
        required=False,
        empty_label="Anyone",
        to_field_name="email",
    )
    action = forms.ChoiceField(choices=[("", "Any action"), *AuditAction.choices], required=False)
    connection = forms.ModelChoiceField(
        queryset=Connection.objects.order_by("name"),
        required=False,
        empty_label="Any connection",
        to_field_name="code",
    )
    since = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="To", widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            self.add_error("until", "“To” must be on or after “From”.")
        return data

    def events(self) -> QuerySet[AuditEvent]:
        events = AuditEvent.objects.select_related("actor", "connection", "client", "service_key")
        if not self.is_valid():
            return events.none()
        data = self.cleaned_data
        if data.get("person"):
            events = events.filter(actor=data["person"])
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("connection"):
            events = events.filter(connection=data["connection"])
        zone = timezone.get_current_timezone()
        if data.get("since"):
            events = events.filter(at__gte=datetime.combine(data["since"], time.min, zone))
        if data.get("until"):
            events = events.filter(at__lte=datetime.combine(data["until"], time.max, zone))
        return events


def _require_administrator(user: Any) -> None:
    if not user.is_superuser:
        raise RoleRequired(ADMINISTRATORS, "Only administrators read the audit log.")


@login_required
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    _require_administrator(request.user)
    form = AuditFilter(request.GET or None)
    events = form.events() if request.GET else AuditFilter({}).events()
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "connections/audit_log.html",
        {"form": form, "page": page, "query": query.urlencode()},
    )


@login_required
@require_GET
def audit_log_csv(request: HttpRequest) -> StreamingHttpResponse:
    _require_administrator(request.user)
    events = AuditFilter(request.GET).events()

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())

    def rows() -> Iterator[str]:
        yield writer.writerow(["time", "who", "action", "subject", "connection", "detail"])
        for event in events.iterator(chunk_size=2000):
            yield writer.writerow(
                [
                    event.at.isoformat(),
                    event.who,
                    event.get_action_display(),
                    _safe(event.subject),
                    _safe(event.connection.name if event.connection else ""),
                    _safe(event.detail),
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="audit-log-{stamp}.csv"'
    return response


def _safe(text: str) -> str:
    """A cell a spreadsheet will not run as a formula."""
    return "'" + text if text[:1] in {"=", "+", "-", "@", "\t", "\r"} else text
