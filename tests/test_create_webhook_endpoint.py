"""manage.py create_webhook_endpoint: adds an endpoint and prints its signing secret once."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from connections_app.models import WebhookEndpoint

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("create_webhook_endpoint", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_it_prints_the_secret_once_and_stores_it_encrypted() -> None:
    secret, note = run("https://hooks.example.com/kroger")

    assert secret.startswith("whsec_") and "\n" not in secret
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.secret == secret
    assert (endpoint.url, endpoint.events, endpoint.format) == (
        "https://hooks.example.com/kroger",
        "",
        "standard",
    )
    assert secret not in note
    assert "all events" in note


def test_it_takes_events_and_a_format() -> None:
    run(
        "https://hooks.slack.com/services/T000/B000/XXXX",
        "--events",
        "connection.offline, connection.needs_reauthorization",
        "--format",
        "slack",
    )

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.events == "connection.offline connection.needs_reauthorization"
    assert endpoint.format == "slack"


def test_it_names_an_unknown_event() -> None:
    with pytest.raises(CommandError, match=r"--events: Select a valid choice\. connection\.lost"):
        run("https://hooks.example.com/", "--events", "connection.lost")
    assert not WebhookEndpoint.objects.exists()


def test_it_refuses_a_url_that_is_not_http_or_points_inside() -> None:
    with pytest.raises(CommandError, match=r"Enter an http:// or https:// URL\."):
        run("ftp://hooks.example.com/")
    with pytest.raises(CommandError, match=r"169\.254\.169\.254 is a link-local address"):
        run("http://169.254.169.254/")
    assert not WebhookEndpoint.objects.exists()
