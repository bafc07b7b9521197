"""Names people give (connections, OAuth 2.0 clients, service keys) cannot forge a line of an
e-mail header or a log, nor read differently from what they are."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from connections_app import notifications
from connections_app.logging import RedactSecretsFilter
from connections_app.models import Connection, OAuthClient, ServiceKey
from tests.test_admin import change_url, client_admin_data, connection_data
from tests.test_connection_create import panel_data

pytestmark = pytest.mark.django_db

BAD_NAMES = [
    ("Weekly\nshop", "a line break"),
    ("Weekly\r\nBcc: all@example.com", "a line break"),
    ("Weekly\tshop", "a tab"),
    ("Weekly\x1b[31mshop", "a control character (U+001B)"),
    ("Weekly shop\u202egnp.exe", "a character that changes the text direction (U+202E)"),
    ("\u2066Weekly shop", "a character that changes the text direction (U+2066)"),
]


def said(response: Any, found: str) -> bool:
    return f"A name cannot contain {found}." in response.content.decode()


@pytest.mark.parametrize(("name", "found"), BAD_NAMES)
def test_the_connection_panel_refuses_the_name(
    client: Any, owner: Any, oauth_client: OAuthClient, name: str, found: str
) -> None:
    client.force_login(owner)
    response = client.post("/connections/new/", panel_data(oauth_client, name=name))
    assert response.status_code == 400
    assert said(response, found)
    assert not Connection.objects.exists()


def test_the_connection_panel_keeps_names_in_any_language(
    client: Any, owner: Any, oauth_client: OAuthClient
) -> None:
    client.force_login(owner)
    name = "Épicerie — 週末 👩‍👩‍👧"  # an emoji sequence joined by zero-width joiners
    response = client.post("/connections/new/", panel_data(oauth_client, name=name))
    assert response.status_code == 302
    assert Connection.objects.get().name == name


@pytest.mark.parametrize(("name", "found"), BAD_NAMES[:1] + BAD_NAMES[-2:-1])
def test_the_client_form_refuses_the_name(client: Any, owner: Any, name: str, found: str) -> None:
    client.force_login(owner)
    response = client.post(
        "/clients/new/",
        {
            "name": name,
            "environment": "production",
            "grant_type": "authorization_code",
            "client_id": "app-1",
            "client_secret": "secret-1",
        },
    )
    assert response.status_code == 400
    assert said(response, found)
    assert not OAuthClient.objects.exists()


def test_the_service_key_form_refuses_the_name(
    client: Any, admin_user: Any, connection: Connection
) -> None:
    client.force_login(admin_user)
    response = client.post("/service-keys/new/", {"name": "Shop\r\nlist", "all_connections": "on"})
    assert said(response, "a line break")
    assert not ServiceKey.objects.exists()


def test_create_service_key_refuses_the_name(connection: Connection) -> None:
    with pytest.raises(CommandError, match="A name cannot contain a line break"):
        call_command("create_service_key", "Shop\nlist", "--all")
    assert not ServiceKey.objects.exists()


def test_the_admin_refuses_the_names(
    client: Any, admin_user: Any, connection: Connection, oauth_client: OAuthClient
) -> None:
    client.force_login(admin_user)
    response = client.post(change_url(connection), connection_data(connection, name="A\u202eB"))
    assert said(response, "a character that changes the text direction (U+202E)")
    response = client.post(
        change_url(oauth_client), client_admin_data(oauth_client, name="Shopping\napp")
    )
    assert said(response, "a line break")
    connection.refresh_from_db()
    oauth_client.refresh_from_db()
    assert (connection.name, oauth_client.name) == ("Store cart", "Shopping app")


def test_a_log_line_cannot_be_forged_by_a_name_stored_before_the_rule() -> None:
    record = logging.LogRecord(
        "connections_app.worker",
        logging.INFO,
        __file__,
        1,
        "Connection %s (%s): %s",
        ("c0de", "Cart\n2026-01-01 ERROR forged line\u202e", "refreshed"),
        None,
    )
    RedactSecretsFilter().filter(record)
    line = record.getMessage()
    assert "\n" not in line and "\u202e" not in line
    assert line == r"Connection c0de (Cart\n2026-01-01 ERROR forged line\u202e): refreshed"


def test_an_email_subject_cannot_be_forged_by_a_name_stored_before_the_rule(
    connection: Connection, mailoutbox: Any
) -> None:
    Connection.objects.filter(pk=connection.pk).update(name="Cart\nBcc: everyone@example.com")
    connection.refresh_from_db()
    notifications.send_recovery(connection)
    [mail] = mailoutbox
    assert mail.subject == r"Kroger connection “Cart\nBcc: everyone@example.com” works again"
    assert mail.bcc == []
