"""Save & authorize in headless Chromium, as a new user would, against the fake Kroger."""

from __future__ import annotations

import re
import threading
import time
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection as db
from playwright.sync_api import expect

from connections_app.access import EDITORS
from connections_app.models import Connection, ConnectionStatus
from tests.accessibility import assert_accessible
from tests.conftest import CLIENT_SECRET, PASSWORD, sign_in
from tests.fakes.fake_kroger import FakeKroger

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

CLIENT_ID = "weekly-shop-app-0001"
SCOPES = {"product.compact", "cart.basic:write", "profile.compact"}


def sign_up_first_user(page: Any) -> None:
    page.goto("/accounts/signup/")
    page.get_by_label("Email").fill("first@team.example")
    page.get_by_label("Password:", exact=True).fill(PASSWORD)
    page.get_by_label("Password (again)").fill(PASSWORD)
    page.get_by_role("button", name="Sign Up").click()
    page.wait_for_url(lambda url: "/accounts/signup/" not in url)
    assert_accessible(page)


def create_connection_with_new_client(
    page: Any, *, name: str, client_name: str, grant: str, scopes: list[str]
) -> None:
    """The "Create connection" panel, adding its OAuth 2.0 client through "+"."""
    page.goto("/connections/new/")
    assert_accessible(page)
    page.get_by_label("Name your connection").fill(name)
    page.locator("select[name=environment]").select_option("production")
    page.get_by_role("button", name="Add OAuth 2.0 client").click()
    dialog = page.locator("dialog[open]")
    assert_accessible(page)
    dialog.locator("input[name=name]").fill(client_name)
    dialog.locator("select[name=environment]").select_option("production")
    dialog.locator("select[name=grant_type]").select_option(grant)
    dialog.locator("input[name=client_id]").fill(CLIENT_ID)
    dialog.locator("input[name=client_secret]").fill(CLIENT_SECRET)
    dialog.get_by_role("button", name="Save").click()
    page.locator("dialog[open]").wait_for(state="detached")
    for scope in scopes:
        page.locator(f"li[data-scope='{scope}'] input[type=checkbox]").check()
    page.get_by_role("button", name="Add selected scopes").click()
    assert_accessible(page)
    page.get_by_role("button", name="Save & authorize").click()


def all_database_text() -> str:
    """Every value of every table, read with raw SQL: what someone with the database sees."""
    chunks: list[str] = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            for row in cursor.fetchall():
                chunks.extend(
                    bytes(value).decode("latin-1")
                    if isinstance(value, bytes | memoryview)
                    else str(value)
                    for value in row
                )
    return "\n".join(chunks)


def test_a_new_user_authorizes_a_connection_end_to_end(page: Any, fake_kroger: FakeKroger) -> None:
    fake_kroger.register_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    sign_up_first_user(page)
    create_connection_with_new_client(
        page,
        name="Weekly shop",
        client_name="Shopping app",
        grant="authorization_code",
        scopes=["product.compact", "cart.basic:write"],
    )

    page.wait_for_url(re.compile(r"/v1/connect/oauth2/authorize\?"))
    page.get_by_role("button", name="Accept").click()

    page.wait_for_url(re.compile(r"/connections/[0-9a-f-]+/$"))
    assert "code=" not in page.url
    page.get_by_text("is authorized and Online").wait_for()
    assert page.locator(".status").first.inner_text() == "Online"
    assert_accessible(page)
    connection = Connection.objects.get(name="Weekly shop")
    assert connection.status == ConnectionStatus.ONLINE
    assert connection.granted_scopes == "cart.basic:write product.compact"
    assert fake_kroger.authorize_requests[0]["code_challenge_method"] == "S256"

    # Nothing the fake issued, nor the client secret, is readable in the database.
    assert fake_kroger.issued  # the code, the access token and the refresh token
    stored = all_database_text()
    assert "Weekly shop" in stored  # the read does see the data
    for secret in [*fake_kroger.issued, CLIENT_SECRET]:
        assert secret not in stored


def test_declining_on_krogers_page_leaves_the_connection_not_authorized(
    page: Any, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    sign_up_first_user(page)
    create_connection_with_new_client(
        page,
        name="Weekly shop",
        client_name="Shopping app",
        grant="authorization_code",
        scopes=["cart.basic:write"],
    )
    page.get_by_role("button", name="Decline").click()

    page.get_by_text("Authorization was declined on Kroger's page").wait_for()
    assert page.locator(".status").first.inner_text() == "Not authorized"
    assert_accessible(page)
    assert fake_kroger.token_calls == []


def test_a_replayed_callback_url_is_refused(page: Any, fake_kroger: FakeKroger) -> None:
    fake_kroger.register_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    sign_up_first_user(page)
    create_connection_with_new_client(
        page,
        name="Weekly shop",
        client_name="Shopping app",
        grant="authorization_code",
        scopes=["cart.basic:write"],
    )
    callbacks: list[str] = []
    page.on("request", lambda r: callbacks.append(r.url) if "/oauth/callback/" in r.url else None)
    page.get_by_role("button", name="Accept").click()
    page.get_by_text("is authorized and Online").wait_for()

    # The callback's page posts Kroger's answer again by itself: the post is refused.
    with page.expect_response("**/oauth/complete/") as completed:
        page.goto(callbacks[0])

    assert completed.value.status == 400
    page.get_by_text("already used").wait_for()
    assert_accessible(page)
    assert len(fake_kroger.token_calls) == 1


def test_a_callback_opened_in_another_users_session_is_refused(
    page: Any, browser: Any, live_server: Any, fake_kroger: FakeKroger, django_user_model: Any
) -> None:
    fake_kroger.register_client(CLIENT_ID, CLIENT_SECRET, SCOPES)
    sign_up_first_user(page)
    colleague = django_user_model.objects.create_user(
        username="colleague", email="colleague@team.example", password=PASSWORD
    )
    colleague.groups.add(Group.objects.get(name=EDITORS))
    create_connection_with_new_client(
        page,
        name="Weekly shop",
        client_name="Shopping app",
        grant="authorization_code",
        scopes=["cart.basic:write"],
    )
    # The consent is given, but the callback URL reaches another person's browser.
    page.wait_for_url(re.compile(r"/v1/connect/oauth2/authorize\?"))
    callback = fake_kroger.consent(page.url)

    other = browser.new_context(base_url=live_server.url)
    try:
        other_page = other.new_page()
        sign_in(other_page, colleague)
        with other_page.expect_response("**/oauth/complete/") as completed:
            other_page.goto(callback)
        assert completed.value.status == 403
        other_page.get_by_text("started by someone else").wait_for()
        assert_accessible(other_page)
    finally:
        other.close()
    assert fake_kroger.token_calls == []
    assert Connection.objects.get().status == ConnectionStatus.NOT_AUTHORIZED


# What the callback's page shows, noted by the page itself every 100 ms: Playwright cannot
# read a page while its form's post is pending.
NOTE_CALLBACK_PAGE = """
if (location.pathname === "/oauth/callback/") {
    setInterval(() => {
        const form = document.querySelector("form[data-auto-submit]");
        const button = form.querySelector("button");
        const notes = JSON.parse(sessionStorage.getItem("callback-page") || "[]");
        notes.push({
            at: Date.now() / 1000,
            busy: form.getAttribute("aria-busy"),
            status: document.querySelector("[role=status]").textContent.trim(),
            button: [button.textContent, button.disabled],
        });
        sessionStorage.setItem("callback-page", JSON.stringify(notes));
    }, 100);
}
"""


def test_the_return_from_a_slow_kroger_shows_finishing_until_kroger_answers(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger, settings: Any
) -> None:
    fake_kroger.register_client(connection.client.client_id, CLIENT_SECRET, SCOPES)
    settings.KROGER_TIMEOUT_SECONDS = 30
    fake_kroger.token_gate = threading.Event()  # Kroger answers the exchange when told to
    page.add_init_script(NOTE_CALLBACK_PAGE)
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    page.get_by_role("button", name="Authorize").click()

    page.get_by_role("button", name="Accept").click()

    deadline = time.monotonic() + 10
    while not fake_kroger.token_calls and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fake_kroger.token_calls, "the exchange never reached Kroger"
    exchange_pending = time.time()
    time.sleep(0.5)
    fake_kroger.token_gate.set()
    page.wait_for_url(f"**/connections/{connection.code}/")
    page.get_by_text("is authorized and Online").wait_for()

    notes = page.evaluate("JSON.parse(sessionStorage.getItem('callback-page'))")
    waiting = [note for note in notes if note["at"] > exchange_pending]
    assert waiting, notes
    for note in waiting:
        assert note["busy"] == "true"
        assert note["status"].startswith("Finishing authorization…")
        assert note["button"] == ["Finishing authorization…", True]
    assert len(fake_kroger.token_calls_for("authorization_code")) == 1


def test_the_finishing_page_is_accessible_and_posts_once(
    page: Any, owner: Any, connection: Connection, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(connection.client.client_id, CLIENT_SECRET, SCOPES)
    sign_in(page, owner)
    page.goto(f"/connections/{connection.code}/")
    page.get_by_role("button", name="Authorize").click()
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if "/oauth/complete/" in r.url else None)
    # The first post is dropped on its way, so the page stays as it is while it waits.
    page.route("**/oauth/complete/", lambda route: route.abort("aborted"))

    page.get_by_role("button", name="Accept").click()

    page.wait_for_url(re.compile(r"/oauth/callback/\?"))
    form = page.locator("form[data-auto-submit]")
    expect(form).to_have_attribute("aria-busy", "true")
    expect(page.get_by_role("status")).to_contain_text("Finishing authorization…")
    expect(page.get_by_role("button", name="Finishing authorization…")).to_be_disabled()
    assert page.title().startswith("Finishing authorization")
    assert_accessible(page)
    form.evaluate("(form) => form.requestSubmit()")  # a second submit, as a double click
    page.wait_for_timeout(200)
    assert len(posts) == 1
    assert fake_kroger.token_calls == []

    page.unroute("**/oauth/complete/")
    page.reload()  # the page posts again by itself; the attempt was never claimed

    page.get_by_text("is authorized and Online").wait_for()
    assert len(fake_kroger.token_calls_for("authorization_code")) == 1


def test_without_javascript_continue_finishes_the_authorization(
    page: Any,
    browser: Any,
    live_server: Any,
    owner: Any,
    connection: Connection,
    fake_kroger: FakeKroger,
) -> None:
    fake_kroger.register_client(connection.client.client_id, CLIENT_SECRET, SCOPES)
    plain = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        plain_page = plain.new_page()
        sign_in(plain_page, owner)
        plain_page.goto(f"/connections/{connection.code}/")
        plain_page.get_by_role("button", name="Authorize").click()
        plain_page.get_by_role("button", name="Accept").click()

        plain_page.wait_for_url("**/oauth/callback/?*")
        expect(plain_page.get_by_role("status")).to_contain_text("Continue to finish")
        assert plain_page.locator("form[aria-busy]").count() == 0
        assert fake_kroger.token_calls == []
        plain_page.get_by_role("button", name="Continue").click()

        plain_page.wait_for_url(f"**/connections/{connection.code}/")
        plain_page.get_by_text("is authorized and Online").wait_for()
    finally:
        plain.close()
    assert len(fake_kroger.token_calls_for("authorization_code")) == 1


def test_a_client_credentials_connection_is_online_without_a_consent_page(
    page: Any, fake_kroger: FakeKroger
) -> None:
    fake_kroger.register_client(CLIENT_ID, CLIENT_SECRET, {"product.compact"})
    sign_up_first_user(page)
    create_connection_with_new_client(
        page,
        name="Catalogue",
        client_name="Catalogue app",
        grant="client_credentials",
        scopes=["product.compact"],
    )

    page.get_by_text("“Catalogue” is Online").wait_for()
    assert page.locator(".status").first.inner_text() == "Online"
    assert_accessible(page)
    assert fake_kroger.authorize_requests == []
    [call] = fake_kroger.token_calls
    assert call["grant_type"] == "client_credentials"
    stored = all_database_text()
    for secret in [*fake_kroger.issued, CLIENT_SECRET]:
        assert secret not in stored
