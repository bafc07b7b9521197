"""Every page once, at a desktop's width and at the narrowest phone's (320 CSS pixels), in
headless Chromium: no serious or critical accessibility violation, and on the phone nothing
scrolls sideways, the navigation included."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from connections_app.models import Connection, OAuthClient, ServiceKey, WebhookEndpoint
from tests.accessibility import assert_accessible
from tests.conftest import sign_in
from tests.connection_states import authorize
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIZES = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 320, "height": 640}}

SIDEWAYS = """() => {
    const wider = (element) => element.scrollWidth > element.clientWidth + 1;
    const nav = document.querySelector(".site-header nav");
    const name = (e) => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
        (typeof e.className === "string" && e.className ? "." + e.className.split(" ")[0] : "");
    return {
        page: document.documentElement.scrollWidth - window.innerWidth,
        nav: nav && wider(nav) ? nav.scrollWidth - nav.clientWidth : 0,
        // What sticks out, for the failure message.
        beyond: Array.from(document.body.querySelectorAll("*"))
            .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(0, 8).map(name),
    };
}"""


def signed_in_pages(connection: Connection, client: OAuthClient) -> list[str]:
    key, _ = ServiceKey.create_key(name="Shopping list service", all_connections=True)
    endpoint = WebhookEndpoint.objects.create(
        url="https://hooks.example.com/kroger/a-rather-long-path/for-the-phone",
        description="Alerts",
    )
    return [
        "/",
        "/?status=online",
        "/clients/",
        f"/clients/{client.code}/",
        f"/clients/{client.code}/edit/",
        f"/clients/{client.code}/delete/",
        "/clients/new/",
        "/connections/new/",
        f"/connections/{connection.code}/",
        f"/connections/{connection.code}/edit/",
        f"/connections/{connection.code}/delete/",
        f"/connections/{connection.code}/disconnect/",
        "/service-keys/",
        "/service-keys/new/",
        f"/service-keys/{key.code}/revoke/",
        "/webhooks/",
        "/webhooks/new/",
        f"/webhooks/{endpoint.code}/",
        f"/webhooks/{endpoint.code}/edit/",
        f"/webhooks/{endpoint.code}/delete/",
        "/audit/",
        "/service-api/",
        "/accounts/2fa/",
        "/accounts/2fa/required/",
        "/accounts/sessions/",
        "/accounts/password/change/",
        "/accounts/email/",
        "/accounts/reauthenticate/",
        "/accounts/2fa/totp/activate/",  # asks to confirm it is you first
        "/accounts/2fa/webauthn/add/",
        "/oauth/callback/?state=unknown&code=x",
        f"/connections/{uuid.uuid4()}/",  # the 404 page
    ]


def check(page: Any, path: str, size: str) -> None:
    page.set_viewport_size(SIZES[size])
    page.goto(path)
    page.wait_for_load_state("networkidle")
    if size == "phone":
        overflow = page.evaluate(SIDEWAYS)
        assert overflow["page"] <= 0 and overflow["nav"] == 0, f"{path} at 320px: {overflow}"
    try:
        assert_accessible(page)
    except AssertionError as failure:
        raise AssertionError(f"{path} ({size}): {failure}") from None


@pytest.mark.parametrize("size", SIZES)
def test_every_page_of_an_administrator(
    page: Any,
    admin_user: Any,
    connection: Connection,
    oauth_client: OAuthClient,
    fake_kroger: FakeKroger,
    size: str,
) -> None:
    authorize(connection, fake_kroger)
    sign_in(page, admin_user)
    for path in signed_in_pages(connection, oauth_client):
        check(page, path, size)


@pytest.mark.parametrize("size", SIZES)
def test_every_page_before_signing_in(page: Any, size: str) -> None:
    for path in ["/accounts/login/", "/accounts/signup/", "/accounts/password/reset/"]:
        check(page, path, size)


@pytest.mark.parametrize("size", SIZES)
def test_the_pages_of_a_viewer_and_an_outsider(
    page: Any, teammate: Any, outsider: Any, connection: Connection, size: str
) -> None:
    sign_in(page, teammate)
    for path in ["/", f"/connections/{connection.code}/", "/connections/new/"]:  # the last: 403
        check(page, path, size)
    if size == "phone":
        page.locator(".site-header summary").click()  # Sign out is in the menu
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, outsider)
    check(page, "/", size)
