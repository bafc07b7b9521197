"""Who may see and change what. Every view fetches objects through these helpers.

Roles are Django groups made by a migration: Viewers see clients and connections; Editors also
create, change, authorize and delete them; administrators are superusers. A signed-in person in
neither group (an outsider) sees nothing: objects answer 404 so their existence is not revealed.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied, ValidationError
from django.db.models import Model, QuerySet
from django.http import Http404

from connections_app.models import Connection, OAuthClient, ServiceKey, WebhookEndpoint

M = TypeVar("M", bound=Model)

VIEWERS = "Viewers"
EDITORS = "Editors"

VIEW_PERMISSIONS = ["view_connection", "view_oauthclient", "view_scope"]
EDIT_PERMISSIONS = [
    *VIEW_PERMISSIONS,
    "add_connection",
    "change_connection",
    "delete_connection",
    "add_oauthclient",
    "change_oauthclient",
    "delete_oauthclient",
]


ADMINISTRATORS = "Administrators"  # superusers, not a group


class RoleRequired(PermissionDenied):
    """Refused for want of a role: the 403 page names the role and who can grant it."""

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role


def role_of(user: Any) -> str:
    """The strongest role ``user`` holds, or "" for none."""
    if user.is_superuser:
        return ADMINISTRATORS
    names = {group.name for group in user.groups.all()}
    return next((role for role in (EDITORS, VIEWERS) if role in names), "")


def can_view(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm("connections_app.view_connection"))


def can_edit(user: Any) -> bool:
    return bool(user.is_authenticated and user.has_perm("connections_app.change_connection"))


def require_viewer(user: Any) -> None:
    if not can_view(user):
        raise RoleRequired(VIEWERS, "You have no access to this portal's connections yet.")


def require_editor(user: Any) -> None:
    require_viewer(user)
    if not can_edit(user):
        raise RoleRequired(EDITORS, "Only editors can change connections and OAuth 2.0 clients.")


def _get(queryset: QuerySet[M], user: Any, code: uuid.UUID | str, edit: bool) -> M:
    if not can_view(user):
        raise Http404
    try:
        obj = queryset.get(code=code)
    except (ObjectDoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404 from None
    if edit:
        require_editor(user)
    return obj


def get_connection_for_user(user: Any, code: uuid.UUID | str, *, edit: bool = False) -> Connection:
    return _get(Connection.objects.select_related("client"), user, code, edit)


def get_client_for_user(user: Any, code: uuid.UUID | str, *, edit: bool = False) -> OAuthClient:
    return _get(OAuthClient.objects.all(), user, code, edit)


def get_connection_for_service_key(key: ServiceKey, code: uuid.UUID | str) -> Connection:
    """A connection the service key may use; 404 otherwise, so its existence is not revealed."""
    connection = key.usable_connection(code)
    if connection is None:
        raise Http404
    return connection


def require_administrator(user: Any, what: str = "service keys") -> None:
    """Service keys and webhooks reach every connection: only administrators manage them."""
    if not (user.is_authenticated and user.is_superuser):
        raise RoleRequired(ADMINISTRATORS, f"Only administrators manage {what}.")


def get_webhook_endpoint_for_admin(user: Any, code: uuid.UUID | str) -> WebhookEndpoint:
    """A webhook endpoint, for administrators only: endpoints learn of every connection."""
    require_administrator(user, "webhooks")
    try:
        return WebhookEndpoint.objects.select_related("created_by").get(code=code)
    except (WebhookEndpoint.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404 from None
