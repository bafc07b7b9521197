"""Role changes made in the admin's user form are in the audit log: who changed whose role,
from what to what. Each test submits the admin's own change form as a browser would."""

from __future__ import annotations

from typing import Any

import pytest
from allauth.usersessions.models import UserSession
from django.contrib.auth.models import Group, Permission
from django.test import Client

from connections_app.access import EDITORS, VIEWERS
from connections_app.models import AuditAction, AuditEvent
from tests import html_forms
from tests.conftest import PASSWORD, client_for

pytestmark = pytest.mark.django_db


def change_url(user: Any) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def form_as_shown(page: str) -> dict[str, Any]:
    """What the browser would send for the form as rendered: text and hidden inputs, ticked
    boxes, and each select's chosen options."""
    form = html_forms.read(page)
    data: dict[str, Any] = {}
    for field in form.inputs:
        name, kind = field.get("name"), field.get("type")
        if not name or kind in ("submit", "button") or name == "csrfmiddlewaretoken":
            continue
        if kind == "checkbox":
            if "checked" in field:
                data[name] = field.get("value") or "on"
            continue
        data[name] = field.get("value") or ""
    for name, choices in form.options.items():
        data[name] = [o["value"] for o in choices if "selected" in o]
    return data


def submit_change(client: Any, user: Any, **edits: Any) -> Any:
    """Open the admin's change form for ``user``, apply ``edits`` (None unticks a box) and
    save it."""
    page = client.get(change_url(user))
    assert page.status_code == 200
    data = form_as_shown(page.content.decode())
    for name, value in edits.items():
        if value is None:
            data.pop(name, None)
        else:
            data[name] = value
    answer = client.post(change_url(user), data)
    assert answer.status_code == 302, answer.content.decode()[:3000]
    return answer


def group_ids(*names: str) -> list[str]:
    return [str(Group.objects.get(name=name).pk) for name in names]


def role_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action=AuditAction.ROLE_CHANGED).order_by("id"))


def test_promoting_a_viewer_to_editor_records_who_did_it_and_from_what_to_what(
    client: Any, admin_user: Any, teammate: Any
) -> None:
    client_for(client, admin_user)
    submit_change(client, teammate, groups=group_ids(VIEWERS, EDITORS))

    assert teammate.groups.filter(name=EDITORS).exists()
    [event] = role_events()
    assert event.actor == admin_user
    assert event.subject == teammate.email
    assert event.detail == (
        "Role: Viewers → Editors; Groups: Viewers → Editors, Viewers (in the admin)"
    )


def test_making_someone_a_superuser_and_staff_is_recorded(
    client: Any, admin_user: Any, owner: Any
) -> None:
    client_for(client, admin_user)
    submit_change(client, owner, is_superuser="on", is_staff="on")

    [event] = role_events()
    assert event.actor == admin_user and event.subject == owner.email
    assert event.detail == (
        "Role: Editors → Administrators; Superuser: no → yes; Staff: no → yes (in the admin)"
    )


def test_taking_a_role_away_is_recorded(client: Any, admin_user: Any, owner: Any) -> None:
    client_for(client, admin_user)
    submit_change(client, owner, groups=[])

    [event] = role_events()
    assert event.detail == "Role: Editors → No role; Groups: Editors → none (in the admin)"


def test_a_permission_granted_directly_is_recorded(
    client: Any, admin_user: Any, teammate: Any
) -> None:
    change = Permission.objects.get(codename="change_connection")
    client_for(client, admin_user)
    submit_change(client, teammate, user_permissions=[str(change.pk)])

    [event] = role_events()
    assert event.detail == ("Permissions added: connections_app.change_connection (in the admin)")


def test_an_edit_that_changes_no_role_records_none(
    client: Any, admin_user: Any, teammate: Any
) -> None:
    client_for(client, admin_user)
    submit_change(client, teammate, first_name="Terry")

    assert role_events() == []


def test_deactivating_someone_records_it_and_signs_them_out_everywhere(
    client: Any, admin_user: Any, owner: Any
) -> None:
    laptop = Client(HTTP_USER_AGENT="Laptop browser/1.0")
    assert laptop.post("/accounts/login/", {"login": owner.email, "password": PASSWORD})
    assert UserSession.objects.filter(user=owner).count() == 1

    client_for(client, admin_user)
    submit_change(client, owner, is_active=None)

    [event] = role_events()
    assert event.actor == admin_user
    assert event.detail == "Active: yes → no (in the admin)"
    assert not UserSession.objects.filter(user=owner).exists()
    assert not laptop.get("/").wsgi_request.user.is_authenticated
    ended = AuditEvent.objects.get(action=AuditAction.SESSION_ENDED)
    assert (ended.actor, ended.subject) == (admin_user, owner.email)


def test_deleting_an_account_records_the_role_it_had(
    client: Any, admin_user: Any, owner: Any
) -> None:
    client_for(client, admin_user)
    answer = client.post(f"/admin/auth/user/{owner.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302

    [event] = role_events()
    assert (event.actor, event.subject) == (admin_user, owner.email)
    assert event.detail == "Role: Editors → account deleted (in the admin)"


def test_deleting_accounts_in_bulk_records_each(
    client: Any, admin_user: Any, owner: Any, teammate: Any
) -> None:
    client_for(client, admin_user)
    answer = client.post(
        "/admin/auth/user/",
        {"action": "delete_selected", "_selected_action": [owner.pk, teammate.pk], "post": "yes"},
    )
    assert answer.status_code == 302
    assert sorted(event.subject for event in role_events()) == [owner.email, teammate.email]
