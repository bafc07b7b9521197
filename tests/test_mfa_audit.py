"""Second factors added and removed, and second-factor failures, are in the audit log."""

from __future__ import annotations

from typing import Any

import pytest

from connections_app.models import AuditAction, AuditEvent
from tests.test_mfa import enrol_totp, reauthenticate, sign_in_with_password

pytestmark = pytest.mark.django_db


def details(action: str) -> list[str]:
    return list(
        AuditEvent.objects.filter(action=action)
        .order_by("at", "id")
        .values_list("detail", flat=True)
    )


def test_adding_and_removing_an_authenticator_app_is_recorded(
    client: Any, owner: Any, django_capture_on_commit_callbacks: Any
) -> None:
    # allauth announces these once its transaction commits.
    with django_capture_on_commit_callbacks(execute=True):
        secret = enrol_totp(client, owner)
    assert details(AuditAction.MFA_ADDED) == ["Added authenticator app", "Added recovery codes"]
    reauthenticate(client)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/accounts/2fa/totp/deactivate/")
    assert answer.status_code == 302
    # The last factor gone, allauth removes the recovery codes with it.
    assert details(AuditAction.MFA_REMOVED) == [
        "Removed authenticator app",
        "Removed recovery codes",
    ]
    assert all(event.actor == owner for event in AuditEvent.objects.all())
    assert secret not in repr(list(AuditEvent.objects.values()))


def test_a_wrong_code_is_recorded_as_a_failed_sign_in(client: Any, owner: Any) -> None:
    enrol_totp(client, owner)
    client.post("/accounts/logout/")
    sign_in_with_password(client, owner)
    client.post("/accounts/2fa/authenticate/", {"code": "000000"})
    assert details(AuditAction.SIGN_IN_FAILED)[-1] == "Wrong code for the authenticator app"
