"""Emails about a connection's health: to its owner and the administrators.

A connection that needs someone (its refresh token is dead, or Kroger has been unreachable
for longer than its access token lasted) tells them once, with a link to the connection page;
when it works again, the same people are told of the recovery. ``announce`` is the one place
where what a token change did (its ``Outcome``) becomes a message.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.urls import reverse

from connections_app.logging import one_line
from connections_app.models import ApiBudget, Connection, Notice, OAuthClient, Outcome

logger = logging.getLogger(__name__)


def announce(connection: Connection, outcome: Outcome) -> None:
    """Tell people what ``outcome`` asks them to be told, once its change is committed."""
    if outcome.notice is Notice.FAILURE:
        send_failure(connection, outcome.notice_detail)
    elif outcome.notice is Notice.RECOVERY:
        send_recovery(connection)


def recipients(connection: Connection | OAuthClient) -> list[str]:
    """The owner (who created the connection or client) and every active administrator with an
    email."""
    users = get_user_model().objects.filter(is_active=True, is_superuser=True).exclude(email="")
    addresses = [user.email for user in users.order_by("pk")]
    owner = connection.created_by
    if owner is not None and owner.is_active and owner.email:
        addresses.insert(0, owner.email)
    return list(dict.fromkeys(addresses))


def connection_url(connection: Connection) -> str:
    return settings.SITE_URL + reverse("connection_detail", kwargs={"code": connection.code})


def send_failure(connection: Connection, what_happened: str) -> None:
    """Tell people the connection needs attention. ``what_happened`` holds no secret."""
    url = connection_url(connection)
    if connection.needs_reauthorization:
        subject = f"Kroger connection “{connection.name}” needs to be authorized again"
        action = f"Authorize it again from its page (Reauthorize):\n{url}"
    else:
        subject = f"Kroger connection “{connection.name}” is offline"
        action = (
            "The portal keeps retrying on its own and will tell you when it works again. "
            f"Its page shows the details:\n{url}"
        )
    body = (
        f"The Kroger connection “{connection.name}” ({connection.get_environment_display()}) "
        f"cannot get a new access token.\n\n{what_happened}\n\n{action}\n"
    )
    _send(connection, subject, body)


def send_recovery(connection: Connection) -> None:
    subject = f"Kroger connection “{connection.name}” works again"
    body = (
        f"The Kroger connection “{connection.name}” ({connection.get_environment_display()}) "
        f"got a new access token and is online again.\n\n{connection_url(connection)}\n"
    )
    _send(connection, subject, body)


def send_budget_warning(budget: ApiBudget) -> None:
    """Tell the client's owner and the administrators that 80% of a daily budget is spent."""
    client = budget.client
    ends = budget.window_ends_at()
    url = settings.SITE_URL + reverse("client_detail", kwargs={"code": client.code})
    subject = f"Kroger {budget.api_label} budget of “{client.name}” is {budget.share():.0%} spent"
    body = (
        f"The OAuth 2.0 client “{client.name}” has made {budget.calls:,} of its "
        f"{budget.daily_limit or 0:,} daily calls to Kroger's {budget.api_label} API"
        + (f"; the count resets at {ends:%Y-%m-%d %H:%M} UTC" if ends else "")
        + ".\nWhen it is spent, calls through the portal are refused until then.\n\n"
        f"Which services spent it:\n{url}\n"
    )
    _send(client, subject, body)


def _send(connection: Connection | OAuthClient, subject: str, body: str) -> None:
    subject = one_line(subject)  # a name stored before names were checked: no header forgery
    to = recipients(connection)
    if not to:
        logger.warning("No one to email about %s: no owner or admin email", connection.code)
        return
    try:
        send_mail(subject, body, None, to)
    except Exception as exc:  # a mail server problem must not undo a saved refresh
        logger.error("Could not email about %s: %s", connection.code, type(exc).__name__)
