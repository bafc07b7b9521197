"""An administrator adds a webhook endpoint, copies its secret and sends a test event, in
Chromium; each page passes the accessibility audit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from standardwebhooks.webhooks import Webhook

from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.fakes.receiver import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def receiver(settings: Any) -> Iterator[Receiver]:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    fake = Receiver().start()
    yield fake
    fake.stop()


def test_an_administrator_adds_an_endpoint_and_sends_a_test_event(
    page: Any, admin_user: Any, receiver: Receiver
) -> None:
    sign_in(page, admin_user)
    page.get_by_role("link", name="Webhooks").click()
    assert_accessible(page)
    page.get_by_role("link", name="New endpoint").click()
    page.get_by_label("URL").fill(receiver.url())
    page.get_by_label("Description").fill("On-call alerts")
    page.get_by_label("connection.needs_reauthorization — A connection needs").check()
    assert_accessible(page)
    page.get_by_role("button", name="Create endpoint").click()

    expect(page.get_by_text("it is shown only this once")).to_be_visible()
    secret = page.locator("#webhook-secret").inner_text()
    assert secret.startswith("whsec_")
    assert_accessible(page)
    page.get_by_role("link", name="Back to the endpoint").click()

    page.get_by_role("button", name="Send test event").click()
    expect(
        page.get_by_text("Test event delivered: the endpoint answered HTTP 200.")
    ).to_be_visible()
    log = page.get_by_role("region", name="Delivery log")
    expect(log.get_by_role("cell", name="webhook.test")).to_be_visible()
    assert_accessible(page)
    [delivery] = receiver.received
    assert Webhook(secret).verify(delivery.body, delivery.headers)["type"] == "webhook.test"
