"""The client page's "Daily limits" form: editors and administrators set each API's limit
(blank: Kroger's figure; none for a Partner API client); viewers see the bars only."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from connections_app.models import ApiBudget, AuditAction, AuditEvent, OAuthClient
from tests.conftest import client_for
from tests.html_forms import input_value

pytestmark = pytest.mark.django_db


def limits_url(oauth_client: OAuthClient) -> str:
    return f"/clients/{oauth_client.code}/limits/"


def limits(oauth_client: OAuthClient) -> dict[str, int | None]:
    return dict(oauth_client.budgets.values_list("api", "daily_limit"))


KROGER = {"cart": "5000", "identity": "5000", "locations": "1600", "products": "10000"}


def test_an_editor_sets_a_limit_and_it_is_audited(
    client: Client, oauth_client: OAuthClient, owner: Any
) -> None:
    editor = client_for(client, owner)
    page = editor.get(f"/clients/{oauth_client.code}/").content.decode()
    assert 'action="/clients/' in page and "Save limits" in page

    response = editor.post(limits_url(oauth_client), {**KROGER, "locations": "800"})

    assert response.status_code == 302
    assert limits(oauth_client) == {
        "cart": 5000,
        "identity": 5000,
        "locations": 800,
        "products": 10000,
    }
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CHANGED)
    assert (event.actor, event.client, event.detail) == (
        owner,
        oauth_client,
        "Daily limit of Locations: 800 calls a day",
    )
    page = editor.get(response["Location"]).content.decode()
    assert "Daily limits saved: Locations." in page
    assert "0 of 800 today" in page


def test_a_blank_limit_puts_back_krogers_figure(
    client: Client, oauth_client: OAuthClient, admin_user: Any
) -> None:
    ApiBudget.objects.create(client=oauth_client, api="products", daily_limit=50)
    response = client_for(client, admin_user).post(
        limits_url(oauth_client), {**KROGER, "products": ""}
    )
    assert response.status_code == 302
    assert limits(oauth_client)["products"] == 10_000


def test_a_partner_api_client_has_no_limit_when_blank(
    client: Client, oauth_client: OAuthClient, owner: Any
) -> None:
    oauth_client.partner_api = True
    oauth_client.save()
    editor = client_for(client, owner)
    page = editor.get(f"/clients/{oauth_client.code}/").content.decode()
    assert "Blank: no limit (a Partner API client)." in page
    response = editor.post(limits_url(oauth_client), {"products": "20000"})
    assert response.status_code == 302
    assert limits(oauth_client) == {
        "cart": None,
        "identity": None,
        "locations": None,
        "products": 20000,
    }


def test_saving_a_limit_keeps_the_calls_counted_meanwhile(
    client: Client, oauth_client: OAuthClient, owner: Any
) -> None:
    products = ApiBudget.objects.create(
        client=oauth_client,
        api="products",
        daily_limit=10_000,
        calls=10,
        window_started_at=timezone.now(),
    )
    editor = client_for(client, owner)
    editor.get(f"/clients/{oauth_client.code}/")
    ApiBudget.objects.filter(pk=products.pk).update(calls=25)  # counted while the page was open
    editor.post(limits_url(oauth_client), {**KROGER, "products": "500"})
    products.refresh_from_db()
    assert (products.daily_limit, products.calls) == (500, 25)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "Enter 0 or more calls a day (0 stops every call)."),
        ("many", "Enter a whole number of calls a day, or leave it blank."),
        ("99999999", "Enter at most 10,000,000 calls a day."),
    ],
)
def test_a_wrong_limit_is_refused_with_what_to_fix(
    client: Client, oauth_client: OAuthClient, owner: Any, value: str, message: str
) -> None:
    response = client_for(client, owner).post(limits_url(oauth_client), {**KROGER, "cart": value})
    assert response.status_code == 400
    page = response.content.decode()
    assert f'<a href="#id_cart">Cart: {message}</a>' in page  # the summary links to the field
    assert input_value(page, "cart") == value  # what was typed stays to be corrected
    assert limits(oauth_client)["cart"] == 5000
    assert not AuditEvent.objects.filter(action=AuditAction.CLIENT_CHANGED).exists()


def test_a_viewer_sees_the_bars_but_may_not_set_limits(
    client: Client, oauth_client: OAuthClient, teammate: Any
) -> None:
    viewer = client_for(client, teammate)
    page = viewer.get(f"/clients/{oauth_client.code}/").content.decode()
    assert "0 of 10,000 today" in page
    assert "Save limits" not in page
    assert viewer.post(limits_url(oauth_client), {"products": "1"}).status_code == 403
    assert limits(oauth_client)["products"] == 10_000


def test_an_outsider_gets_404_and_changes_nothing(
    client: Client, oauth_client: OAuthClient, outsider: Any
) -> None:
    response = client_for(client, outsider).post(limits_url(oauth_client), {"products": "1"})
    assert response.status_code == 404
    assert not ApiBudget.objects.filter(daily_limit=1).exists()


def test_signed_out_nothing_changes(client: Client, oauth_client: OAuthClient) -> None:
    response = client.post(limits_url(oauth_client), {"products": "1"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
    assert not ApiBudget.objects.filter(daily_limit=1).exists()


def test_only_post_changes_limits(client: Client, oauth_client: OAuthClient, owner: Any) -> None:
    assert client_for(client, owner).get(limits_url(oauth_client)).status_code == 405
