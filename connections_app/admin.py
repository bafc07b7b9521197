"""Django admin for the portal. Secrets are write-only here: never shown, blank keeps them.

The admin keeps the domain rules the portal's own forms keep, and records its changes in the
audit trail (field names only, never values), so a connection's History shows them too.
"""

from __future__ import annotations

from typing import Any

from allauth.account.decorators import reauthentication_required, secure_admin_login
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminSplitDateTime
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.utils.text import capfirst

from connections_app import changes, webhooks
from connections_app.access import role_of
from connections_app.accounts import end_all_sessions
from connections_app.fields import secret_state
from connections_app.forms import ConnectionRulesForm, banner_field, changed_labels
from connections_app.models import (
    ApiBudget,
    ApiUsage,
    AuditAction,
    AuditEvent,
    AuthorizationAttempt,
    Connection,
    KeyQuota,
    OAuthClient,
    Scope,
    ServiceKey,
    TokenHandout,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    client_id_validator,
    client_secret_validator,
)
from connections_app.webhook_views import WebhookEndpointForm

admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
_admin_view = admin.site.admin_view


def _admin_view_confirming_changes(view: Any, cacheable: bool = False) -> Any:
    """Every change made in the admin (a POST: client secrets, service keys, roles, …) asks to
    confirm it is you first, as the portal's own pages do; reading does not, nor signing out."""

    def enabled(request: HttpRequest) -> bool:
        return bool(settings.REAUTHENTICATE_SENSITIVE_CHANGES) and (
            request.path != reverse("admin:logout")
        )

    confirmed = reauthentication_required(view, allow_get=True, enabled=enabled)
    return _admin_view(confirmed, cacheable)


admin.site.admin_view = _admin_view_confirming_changes  # type: ignore[method-assign]
admin.site.site_header = "Kroger connections administration"
admin.site.site_title = "Kroger connections"


class AccessibleWidgetsMixin:
    """Labels for the admin widgets Django leaves unlabelled.

    A split date/time field's one <label> points at neither of its two boxes, so each box is
    named after the field; the filter_horizontal lists get js/admin-selector.js.
    """

    class Media:
        js = ["js/admin-selector.js"]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        formfield = super().formfield_for_dbfield(db_field, request, **kwargs)  # type: ignore[misc]
        widget = getattr(formfield, "widget", None)
        if isinstance(widget, AdminSplitDateTime):
            label = capfirst(str(db_field.verbose_name))
            date_box, time_box = widget.widgets
            date_box.attrs["aria-label"] = f"{label}: date"
            time_box.attrs["aria-label"] = f"{label}: time"
        return formfield


class OAuthClientAdminForm(forms.ModelForm):
    new_client_secret = forms.CharField(
        label="Client secret",
        required=False,
        strip=True,
        validators=[client_secret_validator],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the stored secret.",
    )

    class Meta:
        model = OAuthClient
        fields = ["name", "environment", "grant_type", "client_id", "partner_api"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["client_id"].validators.append(client_id_validator)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        state = secret_state(self.instance, "client_secret") if self.instance.pk else "not set"
        if state != "set" and not cleaned.get("new_client_secret"):
            self.add_error(
                "new_client_secret",
                "Enter the client secret again: the stored one cannot be decrypted with "
                "ENCRYPTION_KEYS."
                if state == "unreadable"
                else "Enter the client secret Kroger gave this app.",
            )
        return cleaned

    def save(self, commit: bool = True) -> Any:
        if self.cleaned_data.get("new_client_secret"):
            self.instance.client_secret = self.cleaned_data["new_client_secret"]
        return super().save(commit)


@admin.register(OAuthClient)
class OAuthClientAdmin(admin.ModelAdmin):
    form = OAuthClientAdminForm
    list_display = ["name", "environment", "grant_type", "client_id", "secret", "updated_at"]
    list_filter = ["environment", "grant_type"]
    search_fields = ["name", "client_id"]
    readonly_fields = ["code", "secret", "created_by", "created_at", "updated_at"]
    fields = [
        "name",
        "environment",
        "grant_type",
        "client_id",
        "new_client_secret",
        "secret",
        "partner_api",
        "code",
        "created_by",
        "created_at",
        "updated_at",
    ]

    @admin.display(description="Client secret")
    def secret(self, obj: OAuthClient) -> str:
        return obj.secret_display

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if change:
            changes.client_changed(obj, request.user, changed_labels(form))
        else:
            changes.client_created(obj, request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        changes.delete_client(obj, request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "allows_client_credentials"]
    list_filter = ["allows_client_credentials"]
    search_fields = ["name", "description"]


class ConnectionAdminForm(ConnectionRulesForm):
    banner = banner_field()

    class Meta:
        model = Connection
        fields = ["name", "environment", "client", "scopes", "banner"]


@admin.register(Connection)
class ConnectionAdmin(AccessibleWidgetsMixin, admin.ModelAdmin):
    form = ConnectionAdminForm
    list_display = ["name", "environment", "client", "status", "token_expires_at", "updated_at"]
    list_filter = ["status", "environment", "client__grant_type"]
    list_select_related = ["client"]
    search_fields = ["name", "client__name"]
    filter_horizontal = ["scopes"]
    readonly_fields = [
        "code",
        "status",
        "status_reason",
        "tokens",
        "token_expires_at",
        "granted_scopes",
        "authorized_at",
        "last_refreshed_at",
        "refresh_failures",
        "next_refresh_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    fields = ["name", "environment", "client", "scopes", "banner", *readonly_fields]

    @admin.display(description="Tokens")
    def tokens(self, obj: Connection) -> str:
        access = secret_state(obj, "access_token").replace("unreadable", "unreadable — reauthorize")
        refresh = secret_state(obj, "refresh_token").replace(
            "unreadable", "unreadable — reauthorize"
        )
        return f"access token {access}; refresh token {refresh}"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            return
        # Only the edited columns: the tokens read with this page may have been rotated since.
        discarded = changes.save_connection_edit(
            obj, request.user, form.changed_data, changed_labels(form)
        )
        if discarded:
            self.message_user(request, changes.TOKENS_DISCARDED, messages.WARNING)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change:  # after the scopes are saved, so that the event can name them
            changes.connection_created(form.instance, request.user)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        changes.delete_connection(obj, request.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuthorizationAttempt)
class AuthorizationAttemptAdmin(ReadOnlyAdmin):
    list_display = ["connection", "user", "environment", "created_at", "used_at"]
    list_filter = ["environment"]
    list_select_related = ["connection", "user"]
    search_fields = ["connection__name"]
    fields = ["connection", "user", "environment", "redirect_uri", "created_at", "used_at"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "subject", "who", "detail"]
    list_filter = ["action"]
    list_select_related = ["actor"]
    search_fields = ["subject", "detail", "actor_label"]
    date_hierarchy = "at"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ServiceKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


class ServiceKeyAdminForm(forms.ModelForm):
    class Meta:
        model = ServiceKey
        fields = ["name", "all_connections", "connections", "may_proxy", "may_fetch_tokens"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("may_proxy") and not cleaned.get("may_fetch_tokens"):
            self.add_error(
                "may_proxy",
                "Choose what the key may do: call Kroger through the portal, fetch access "
                "tokens, or both.",
            )
        return cleaned


@admin.register(ServiceKey)
class ServiceKeyAdmin(AccessibleWidgetsMixin, admin.ModelAdmin):
    """The key itself is generated on save and shown once, on the page after "Save"."""

    form = ServiceKeyAdminForm

    list_display = [
        "name",
        "key_prefix",
        "state",
        "all_connections",
        "may_proxy",
        "may_fetch_tokens",
        "expires_at",
        "last_used_at",
        "created_at",
    ]
    list_filter = [ServiceKeyStateFilter, "all_connections"]
    search_fields = ["name", "key_prefix"]
    readonly_fields = [
        "code",
        "key_prefix",
        "revoked_at",
        "last_used_at",
        "created_by",
        "created_at",
    ]
    fields = [
        "name",
        "all_connections",
        "connections",
        "may_proxy",
        "may_fetch_tokens",
        "expires_at",
        *readonly_fields,
    ]
    filter_horizontal = ["connections"]
    actions = ["revoke_keys"]

    # What an edit may write: a full save would undo a revocation made meanwhile.
    EDITABLE_FIELDS = ["name", "all_connections", "may_proxy", "may_fetch_tokens", "expires_at"]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            obj.new_key = obj.set_new_secret()
            super().save_model(request, obj, form, change)
            return
        obj.save(update_fields=self.EDITABLE_FIELDS)
        if detail := changes.changes_detail(changed_labels(form)):
            AuditEvent.record(
                AuditAction.SERVICE_KEY_CHANGED, actor=request.user, service_key=obj, detail=detail
            )

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            AuditEvent.record(
                AuditAction.SERVICE_KEY_DELETED,
                actor=request.user,
                service_key=obj,
                detail=f"{obj.key_prefix}…",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        if not change:
            form.instance.record_created(actor=request.user)

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        # Rendered straight away rather than passed through messages, which would keep the
        # key in a cookie or the session store.
        response = TemplateResponse(
            request,
            "admin/connections_app/servicekey/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "key": obj,
                "raw_key": getattr(obj, "new_key", ""),
                "title": f"Service key {obj.name} created",
            },
        )
        add_never_cache_headers(response)
        return response

    @admin.action(description="Revoke the selected service keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ServiceKey]) -> None:
        revoked = sum(key.revoke(actor=request.user) for key in queryset)
        self.message_user(request, f"Revoked {revoked} service key(s).", messages.SUCCESS)


@admin.register(ApiUsage)
class ApiUsageAdmin(ReadOnlyAdmin):
    list_display = ["hour", "client", "api", "service_key", "count"]
    list_filter = ["api", "client"]
    list_select_related = ["client", "service_key"]
    date_hierarchy = "hour"


@admin.register(TokenHandout)
class TokenHandoutAdmin(ReadOnlyAdmin):
    list_display = ["hour", "service_key", "connection", "count", "first_at", "last_at"]
    list_filter = ["service_key"]
    list_select_related = ["service_key", "connection"]
    date_hierarchy = "hour"


class LimitAdmin(admin.ModelAdmin):
    """Limits are edited here; the counts belong to the portal and are only shown. An edit
    writes the limit alone: a full save would put back the count read when the page was
    loaded, undoing every call counted meanwhile."""

    list_editable = ["daily_limit"]
    readonly_fields = ["calls", "window_started_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fixed = [self.owner_field, "api"] if obj is not None else []
        return [*fixed, *self.readonly_fields]

    owner_field = ""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            obj.save(update_fields=["daily_limit"])
        else:
            super().save_model(request, obj, form, change)
        limit = "no limit" if obj.daily_limit is None else f"{obj.daily_limit:,} calls a day"
        owner = getattr(obj, self.owner_field)
        AuditEvent.record(
            self.audit_action,
            actor=request.user,
            **{self.audit_subject: owner},
            detail=f"Daily limit of {obj.api_label}: {limit}",
        )

    audit_action = ""
    audit_subject = ""


@admin.register(ApiBudget)
class ApiBudgetAdmin(LimitAdmin):
    list_display = ["client", "api", "daily_limit", "calls", "window_started_at", "spent_until"]
    list_filter = ["api", "client"]
    list_select_related = ["client"]
    fields = ["client", "api", "daily_limit", "calls", "window_started_at", "spent_until"]
    readonly_fields = ["calls", "window_started_at", "spent_until"]
    owner_field = "client"
    audit_action = AuditAction.CLIENT_CHANGED
    audit_subject = "client"


@admin.register(KeyQuota)
class KeyQuotaAdmin(LimitAdmin):
    list_display = ["service_key", "api", "daily_limit", "calls", "window_started_at"]
    list_filter = ["api"]
    list_select_related = ["service_key"]
    fields = ["service_key", "api", "daily_limit", "calls", "window_started_at"]
    owner_field = "service_key"
    audit_action = AuditAction.SERVICE_KEY_CHANGED
    audit_subject = "service_key"


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """The signing secret is made on save and shown once, on the page after "Save"."""

    form = WebhookEndpointForm
    list_display = ["url", "description", "format", "events_display", "enabled", "failing_since"]
    list_filter = ["enabled", "format"]
    search_fields = ["url", "description"]
    readonly_fields = ["code", "disabled_reason", "failing_since", "created_by", "created_at"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        editable = ["url", "description", "format", "event_types"]
        return [*editable, *([] if obj is None else ["enabled"]), *self.readonly_fields]

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
            obj.new_secret_value = obj.secret = obj.new_secret()
            super().save_model(request, obj, form, change)
            return
        turned_off = "enabled" in form.changed_data and not obj.enabled
        if obj.enabled:
            obj.disabled_reason, obj.failing_since = "", None
        obj.save(update_fields=[*form.Meta.fields, "events", "disabled_reason", "failing_since"])
        if turned_off:
            webhooks.disable(obj, "Disabled by an administrator.")

    def response_add(
        self, request: HttpRequest, obj: Any, post_url_continue: str | None = None
    ) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/connections_app/webhookendpoint/created.html",
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "endpoint": obj,
                "secret": getattr(obj, "new_secret_value", ""),
                "title": "Webhook endpoint created",
            },
        )
        add_never_cache_headers(response)
        return response


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event", "endpoint", "state", "attempts", "last_error"]
    list_filter = ["state", "event"]
    list_select_related = ["endpoint"]
    fields = [
        "code",
        "endpoint",
        "event",
        "state",
        "attempts",
        "created_at",
        "first_attempt_at",
        "next_attempt_at",
        "finished_at",
        "last_status_code",
        "last_error",
        "payload",
    ]


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(ReadOnlyAdmin):
    list_display = ["at", "event", "endpoint", "attempt", "status_code", "duration_ms", "error"]
    list_filter = ["event"]
    list_select_related = ["endpoint"]
    date_hierarchy = "at"


def role_state(user: Any) -> dict[str, Any]:
    """What decides what someone may do: read from the database, so an edit can be compared."""
    return {
        "role": role_of(user) or "No role",
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(
            f"{app}.{codename}"
            for app, codename in user.user_permissions.values_list(
                "content_type__app_label", "codename"
            )
        ),
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "is_active": user.is_active,
    }


def role_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Each difference in words: "Groups: Viewers → Editors, Viewers", "Active: yes → no"."""

    def names(values: list[str]) -> str:
        return ", ".join(values) or "none"

    def yes_no(value: bool) -> str:
        return "yes" if value else "no"

    changes = []
    for key, label in (("role", "Role"), ("groups", "Groups")):
        if before[key] != after[key]:
            old, new = before[key], after[key]
            if key == "groups":
                old, new = names(old), names(new)
            changes.append(f"{label}: {old} → {new}")
    added = sorted(set(after["permissions"]) - set(before["permissions"]))
    removed = sorted(set(before["permissions"]) - set(after["permissions"]))
    if added:
        changes.append(f"Permissions added: {names(added)}")
    if removed:
        changes.append(f"Permissions removed: {names(removed)}")
    for key, label in (
        ("is_superuser", "Superuser"),
        ("is_staff", "Staff"),
        ("is_active", "Active"),
    ):
        if before[key] != after[key]:
            changes.append(f"{label}: {yes_no(before[key])} → {yes_no(after[key])}")
    return changes


class PortalUserAdmin(UserAdmin):
    """Role changes (groups, permissions, superuser, staff and active status) go to the audit
    log, naming who changed whose role from what to what."""

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if change:
            stored = get_user_model().objects.get(pk=obj.pk)
            obj._role_before = role_state(stored)
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)  # groups and permissions
        obj = form.instance
        before = getattr(obj, "_role_before", None)
        if before is None:
            return
        after = role_state(obj)
        if changes := role_changes(before, after):
            AuditEvent.record(
                AuditAction.ROLE_CHANGED,
                actor=request.user,
                subject=obj.email or obj.get_username(),
                detail="; ".join(changes) + " (in the admin)",
            )
        if before["is_active"] and not after["is_active"]:
            # A deactivated person is signed out everywhere at once, not at their next request.
            ended = end_all_sessions(obj, by=request.user)
            self.message_user(request, f"{obj.email or obj} was signed out of {ended} session(s).")

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        with transaction.atomic():
            AuditEvent.record(
                AuditAction.ROLE_CHANGED,
                actor=request.user,
                subject=obj.email or obj.get_username(),
                detail=f"Role: {role_of(obj) or 'No role'} → account deleted (in the admin)",
            )
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), PortalUserAdmin)
