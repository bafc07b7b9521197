"""Kroger's daily budgets per OAuth 2.0 client and API, per-key quotas, and who spent them:
counted on every proxied call and Test connection, refused with 429 once spent."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from connections_app import budgets
from connections_app.models import (
    ApiBudget,
    ApiUsage,
    AuditAction,
    AuditEvent,
    Connection,
    KeyQuota,
    OAuthClient,
    ServiceKey,
    api_for_path,
)
from tests.conftest import client_for
from tests.fakes.fake_kroger import FakeKroger

pytestmark = pytest.mark.django_db


@pytest.fixture
def key(online: Connection) -> ServiceKey:
    return ServiceKey.create_key(name="Shopping list service", connections=[online])[0]


@pytest.fixture
def raw(online: Connection) -> str:
    return ServiceKey.create_key(name="Pantry service", connections=[online])[1]


def proxied(client: Client, connection: Connection, raw: str, path: str = "products") -> Any:
    return client.get(
        f"/api/v1/connections/{connection.code}/kroger/{path}",
        headers={"Authorization": f"Bearer {raw}"},
    )


def budget(client: OAuthClient, api: str = "products") -> ApiBudget:
    return ApiBudget.objects.get(client=client, api=api)


@pytest.mark.parametrize(
    ("path", "api"),
    [
        ("products", "products"),
        ("products/0001111041700", "products"),
        ("locations", "locations"),
        ("locations/01400943", "locations"),
        ("chains", "locations"),
        ("chains/KROGER", "locations"),
        ("departments/09", "locations"),
        ("cart/add", "cart"),
        ("identity/profile", "identity"),
        ("Products", "products"),
        ("coupons/clip", "coupons"),
    ],
)
def test_each_path_belongs_to_its_kroger_api(path: str, api: str) -> None:
    assert api_for_path(path) == api


def test_a_budget_starts_at_krogers_figure_and_its_window_at_the_first_call(
    client: Client, online: Connection, raw: str
) -> None:
    before = timezone.now()
    proxied(client, online, raw)
    products = budget(online.client)
    assert products.daily_limit == 10_000
    assert products.calls == 1
    assert products.window_started_at is not None
    assert before <= products.window_started_at <= timezone.now()
    proxied(client, online, raw, "locations")
    assert budget(online.client, "locations").daily_limit == 1_600


def test_a_partner_api_client_starts_without_limits(
    client: Client, online: Connection, raw: str
) -> None:
    OAuthClient.objects.filter(pk=online.client_id).update(partner_api=True)
    proxied(client, online, raw)
    assert budget(online.client).daily_limit is None


def test_an_unknown_api_is_counted_by_its_first_segment_and_unlimited(
    client: Client, online: Connection, raw: str
) -> None:
    proxied(client, online, raw, "coupons/mine")
    coupons = budget(online.client, "coupons")
    assert (coupons.calls, coupons.daily_limit) == (1, None)


def test_a_spent_budget_answers_429_with_retry_after_and_calls_nothing(
    client: Client, online: Connection, raw: str, fake_kroger: FakeKroger
) -> None:
    started = timezone.now() - timedelta(hours=20)
    ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=3,
        calls=3,
        window_started_at=started,
    )
    response = proxied(client, online, raw, "products/1")
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "budget_exhausted"
    assert "Products budget" in response.json()["error"]["message"]
    retry_after = int(response["Retry-After"])
    assert 4 * 3600 - 5 <= retry_after <= 4 * 3600 + 1
    assert fake_kroger.api_requests == []
    assert budget(online.client).calls == 3
    # Another API of the same client is not affected.
    assert proxied(client, online, raw, "locations").status_code == 200


def test_a_new_window_starts_24_hours_after_the_first_call(
    client: Client, online: Connection, raw: str
) -> None:
    ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=3,
        calls=3,
        window_started_at=timezone.now() - timedelta(hours=24, seconds=1),
    )
    assert proxied(client, online, raw).status_code == 200
    renewed = budget(online.client)
    assert renewed.calls == 1
    assert renewed.window_started_at is not None
    assert timezone.now() - renewed.window_started_at < timedelta(minutes=1)


def test_a_refund_comes_only_from_the_windows_that_held_the_call(
    online: Connection, key: ServiceKey
) -> None:
    counted_at = timezone.now() - timedelta(hours=25)
    assert budgets.spend(online.client, "products", key, counted_at) is None
    # Since then the window ran out and a new call opened another; the key got a quota.
    assert budgets.spend(online.client, "products", key) is None
    KeyQuota.objects.create(service_key=key, api="products", daily_limit=5)
    assert budgets.spend(online.client, "products", key) is None
    assert (budget(online.client).calls, KeyQuota.objects.get().calls) == (2, 1)
    budgets.refund(online.client, "products", key, counted_at)  # that first call never left
    # Neither the new window nor the quota held it: both keep their counts.
    assert (budget(online.client).calls, KeyQuota.objects.get().calls) == (2, 1)
    hour = counted_at.replace(minute=0, second=0, microsecond=0)
    assert ApiUsage.objects.get(hour=hour, service_key=key).count == 0  # that hour's, not now's
    assert ApiUsage.objects.exclude(hour=hour).get(service_key=key).count == 2


def test_krogers_429_is_passed_on_and_the_api_treated_as_spent_until_the_window_ends(
    client: Client, online: Connection, raw: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.fail_api(429)
    first = proxied(client, online, raw)
    assert first.status_code == 429
    assert first.json() == {"errors": {"code": "429", "reason": "Injected failure"}}  # Kroger's
    assert 24 * 3600 - 5 <= int(first["Retry-After"]) <= 24 * 3600
    products = budget(online.client)
    assert products.spent_until == products.window_ends_at()
    second = proxied(client, online, raw, "products/2")
    assert second.status_code == 429
    assert second.json()["error"]["code"] == "budget_exhausted"
    assert len(fake_kroger.api_requests) == 1


def test_krogers_retry_after_sets_when_calls_resume(
    client: Client, online: Connection, raw: str, fake_kroger: FakeKroger
) -> None:
    fake_kroger.fail_api(429, headers={"Retry-After": "120"})
    first = proxied(client, online, raw)
    assert first.status_code == 429
    assert 119 <= int(first["Retry-After"]) <= 120
    refused = proxied(client, online, raw)
    assert refused.json()["error"]["code"] == "budget_exhausted"
    assert 115 <= int(refused["Retry-After"]) <= 120
    ApiBudget.objects.filter(pk=budget(online.client).pk).update(
        spent_until=timezone.now() - timedelta(seconds=1)
    )
    assert proxied(client, online, raw).status_code == 200


def test_a_key_quota_stops_one_key_and_leaves_the_others(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    greedy, greedy_raw = ServiceKey.create_key(name="Greedy", connections=[online])
    _, modest_raw = ServiceKey.create_key(name="Modest", connections=[online])
    KeyQuota.objects.create(service_key=greedy, api="products", daily_limit=2)
    assert [proxied(client, online, greedy_raw).status_code for _ in range(3)] == [200, 200, 429]
    refused = proxied(client, online, greedy_raw)
    assert refused.json()["error"]["code"] == "key_quota_exhausted"
    assert "Greedy" in refused.json()["error"]["message"]
    assert 24 * 3600 - 5 <= int(refused["Retry-After"]) <= 24 * 3600
    assert proxied(client, online, modest_raw).status_code == 200
    assert proxied(client, online, greedy_raw, "locations").status_code == 200
    assert budget(online.client).calls == 3  # refused calls spend nothing
    assert len(fake_kroger.api_requests) == 4


def test_usage_is_kept_per_hour_client_api_and_key(
    client: Client, online: Connection, fake_kroger: FakeKroger
) -> None:
    _, first = ServiceKey.create_key(name="First", connections=[online])
    _, second = ServiceKey.create_key(name="Second", connections=[online])
    for raw, path in [(first, "products"), (first, "products"), (second, "products")]:
        proxied(client, online, raw, path)
    proxied(client, online, second, "chains")
    rows = {
        (row.api, row.service_key.name if row.service_key else None, row.count)
        for row in ApiUsage.objects.all()
    }
    assert rows == {("products", "First", 2), ("products", "Second", 1), ("locations", "Second", 1)}
    hour = timezone.now().replace(minute=0, second=0, microsecond=0)
    assert set(ApiUsage.objects.values_list("hour", flat=True)) == {hour}


def test_usage_older_than_the_retention_is_pruned(
    client: Client, online: Connection, raw: str, settings: Any
) -> None:
    settings.USAGE_RETENTION_DAYS = 7
    old = (timezone.now() - timedelta(days=8)).replace(minute=0, second=0, microsecond=0)
    recent = (timezone.now() - timedelta(days=6)).replace(minute=0, second=0, microsecond=0)
    for hour in (old, recent):
        ApiUsage.objects.create(hour=hour, client=online.client, api="products", count=5)
    proxied(client, online, raw)
    assert sorted(ApiUsage.objects.values_list("count", flat=True)) == [1, 5]


def test_a_connection_test_is_counted_as_the_portals_own_call(
    client: Client, online: Connection, owner: Any, fake_kroger: FakeKroger
) -> None:
    client_for(client, owner).post(f"/connections/{online.code}/test/")
    assert len(fake_kroger.api_requests) == 1
    usage = ApiUsage.objects.get()
    assert (usage.api, usage.service_key, usage.count) == ("products", None, 1)
    assert budget(online.client).calls == 1


def test_a_connection_test_is_refused_when_the_budget_is_spent(
    client: Client, online: Connection, owner: Any, fake_kroger: FakeKroger
) -> None:
    ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=1,
        calls=1,
        window_started_at=timezone.now(),
    )
    page = client_for(client, owner).post(f"/connections/{online.code}/test/", follow=True)
    assert "Products budget" in page.content.decode()
    assert fake_kroger.api_requests == []


# --- The 80% warning --------------------------------------------------------------------------


def test_at_80_percent_the_owner_and_administrators_get_one_email_per_window(
    client: Client, online: Connection, raw: str, admin_user: Any, owner: Any
) -> None:
    ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=10,
        calls=6,
        window_started_at=timezone.now() - timedelta(hours=1),
    )
    proxied(client, online, raw)  # 7 of 10
    assert mail.outbox == []
    proxied(client, online, raw)  # 8 of 10
    proxied(client, online, raw)  # 9 of 10
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert set(message.to) == {owner.email, admin_user.email}
    assert "Products" in message.subject and "Shopping app" in message.subject
    assert "8 of its 10 daily calls" in message.body
    assert f"/clients/{online.client.code}/" in message.body
    assert raw not in message.body
    # A new window warns again.
    ApiBudget.objects.filter(pk=budget(online.client).pk).update(
        window_started_at=timezone.now() - timedelta(hours=25), calls=0
    )
    for _ in range(8):
        proxied(client, online, raw)
    assert len(mail.outbox) == 2


def test_budget_events_are_announced_once_each(
    client: Client,
    online: Connection,
    raw: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heard: list[tuple[str, int]] = []
    monkeypatch.setattr(budgets, "budget_warning", lambda b: heard.append(("warning", b.calls)))
    monkeypatch.setattr(budgets, "budget_exhausted", lambda b: heard.append(("exhausted", b.calls)))
    ApiBudget.objects.create(client=online.client, api="products", daily_limit=5)
    statuses = [proxied(client, online, raw).status_code for _ in range(7)]
    assert statuses == [200] * 5 + [429] * 2
    assert heard == [("warning", 4), ("exhausted", 5)]


# --- What people see --------------------------------------------------------------------------


def test_the_client_page_shows_each_api_with_each_keys_share(
    client: Client, online: Connection, teammate: Any, fake_kroger: FakeKroger
) -> None:
    _, first = ServiceKey.create_key(name="First", connections=[online])
    _, second = ServiceKey.create_key(name="Second", connections=[online])
    for raw in (first, first, first, second):
        proxied(client, online, raw)
    ApiBudget.objects.filter(client=online.client, api="products").update(
        window_started_at=timezone.now() - timedelta(hours=18, minutes=47, seconds=30)
    )
    html = client_for(client, teammate).get(f"/clients/{online.client.code}/").content.decode()
    assert "Products</strong> · 4 of 10,000 today · resets in 5 h 12 min" in html
    assert "Locations</strong> · 0 of 1,600 today" in html
    assert "Cart</strong> · 0 of 5,000 today" in html
    assert "Identity</strong> · 0 of 5,000 today" in html
    assert "First: 3 (75%)" in html
    assert "Second: 1 (25%)" in html
    assert "Over 80%" not in html


def test_the_client_page_and_list_warn_at_80_percent(
    client: Client, online: Connection, teammate: Any
) -> None:
    ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=10_000,
        calls=8_000,
        window_started_at=timezone.now() - timedelta(hours=2),
    )
    viewer = client_for(client, teammate)
    page = viewer.get(f"/clients/{online.client.code}/").content.decode()
    assert "8,000 of 10,000 today" in page
    assert "Over 80%" in page
    listing = viewer.get("/clients/").content.decode()
    assert "Daily limit over 80%" in listing


def test_the_client_page_is_not_shown_to_outsiders(
    client: Client, online: Connection, outsider: Any
) -> None:
    assert client_for(client, outsider).get(f"/clients/{online.client.code}/").status_code == 404


def test_the_service_keys_page_shows_each_keys_calls_today_and_permissions(
    client: Client, online: Connection, admin_user: Any
) -> None:
    _, busy = ServiceKey.create_key(name="Busy", connections=[online], may_fetch_tokens=True)
    for _ in range(3):
        proxied(client, online, busy)
    ServiceKey.create_key(name="Idle", connections=[online])
    page = client_for(client, admin_user).get("/service-keys/").content.decode()
    rows = {row.split("</td>")[0].split(">")[-1]: row for row in page.split("<tr>")[2:]}
    assert '<td class="number">3</td>' in rows["Busy"]
    assert "Access tokens and the Kroger proxy" in rows["Busy"]
    assert '<td class="number">0</td>' in rows["Idle"]
    assert "The Kroger proxy" in rows["Idle"]


def test_the_proxy_body_is_never_stored(
    client: Client, online: Connection, raw: str, fake_kroger: FakeKroger
) -> None:
    items = {"items": [{"upc": "0001111041700", "quantity": 1}]}
    client.put(
        f"/api/v1/connections/{online.code}/kroger/cart/add",
        data=json.dumps(items),
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    usage = ApiUsage.objects.get()
    assert usage.api == "cart"
    assert "0001111041700" not in str(list(ApiUsage.objects.values()))


def test_an_administrator_edits_a_limit_without_undoing_calls_counted_meanwhile(
    client: Client, online: Connection, admin_user: Any
) -> None:
    products = ApiBudget.objects.create(
        client=online.client,
        api="products",
        daily_limit=10_000,
        calls=10,
        window_started_at=timezone.now(),
    )
    admin = client_for(client, admin_user)
    url = f"/admin/connections_app/apibudget/{products.pk}/change/"
    assert admin.get(url).status_code == 200
    ApiBudget.objects.filter(pk=products.pk).update(calls=25)  # counted while the page was open
    assert admin.post(url, {"daily_limit": "500"}).status_code == 302
    products.refresh_from_db()
    assert (products.daily_limit, products.calls) == (500, 25)
    page = admin.get(f"/clients/{online.client.code}/").content.decode()
    assert "25 of 500 today" in page
    event = AuditEvent.objects.get(action=AuditAction.CLIENT_CHANGED)
    assert (event.client, event.detail) == (
        online.client,
        "Daily limit of Products: 500 calls a day",
    )
