"""Shared fixtures: people at each access level, clients, connections, and a headless browser.

Access levels: ``admin`` (superuser), ``owner`` (an editor who created the objects),
``teammate`` (a viewer), ``outsider`` (signed in, in no group).
"""

from __future__ import annotations

import copy
import os
import shutil
from collections.abc import Iterator
from importlib import import_module
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, Permission
from django.core.cache import cache
from django.test import Client

from connections_app.access import EDIT_PERMISSIONS, EDITORS, VIEW_PERMISSIONS, VIEWERS
from connections_app.models import Connection, Environment, GrantType, OAuthClient, Scope
from tests.connection_states import authorize
from tests.fakes import tls
from tests.fakes.fake_idp import FakeIdentityProvider
from tests.fakes.fake_kroger import FakeKroger

ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct-horse-battery-staple"
CLIENT_SECRET = "client-secret-Qx7pV2bN9sLm4Kd8"  # a value the tests search the database for


def _loud(message: str) -> None:
    print(f"\n!!! {message}\n")


# --- Skips are failures where every test must run (CI sets REQUIRE_ALL_TESTS=1). ------------


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("REQUIRE_ALL_TESTS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if skipped:
        _loud(f"REQUIRE_ALL_TESTS=1 and {skipped} test(s) were skipped: failing the run.")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(trylast=True)  # after `-m` has deselected what this run leaves out
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        postgres_items = [item for item in items if "postgres" in item.keywords]
        if postgres_items:
            _loud(
                f"{len(postgres_items)} PostgreSQL-only test(s) SKIPPED: install PostgreSQL "
                "(apt-get install postgresql) or set TEST_DATABASE_URL, then run `make test`."
            )
            skip = pytest.mark.skip(reason="needs PostgreSQL (TEST_DATABASE_URL)")
            for item in postgres_items:
                item.add_marker(skip)


# --- Every stand-in serves https with certificates of a throwaway CA (tests/fakes/tls.py). --


@pytest.fixture(scope="session", autouse=True)
def _trust_test_ca(tmp_path_factory: pytest.TempPathFactory) -> None:
    tls.trust_test_ca(tmp_path_factory.mktemp("ca"))


# --- Rows a data migration seeds ---------------------------------------------------------


def restore_catalogue_and_roles() -> None:
    """Put back the scope catalogue and the roles, which come from a data migration. A
    transactional test (live server, threads, processes) ends with a flush that empties every
    table; Django re-creates content types and permissions then, but not migration data."""
    seed = import_module("connections_app.migrations.0002_seed_scopes_and_roles")
    for name, description, allows_cc in seed.PUBLIC_SCOPES:
        Scope.objects.get_or_create(
            name=name,
            defaults={"description": description, "allows_client_credentials": allows_cc},
        )
    for group_name, codenames in ((VIEWERS, VIEW_PERMISSIONS), (EDITORS, EDIT_PERMISSIONS)):
        group, created = Group.objects.get_or_create(name=group_name)
        if created:
            group.permissions.set(
                Permission.objects.filter(
                    content_type__app_label="connections_app", codename__in=codenames
                )
            )


@pytest.fixture(autouse=True)
def _catalogue_and_roles(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("django_db")
    transactional = bool(marker and marker.kwargs.get("transaction")) or any(
        name in request.fixturenames for name in ("transactional_db", "live_server")
    )
    if transactional:
        request.getfixturevalue("transactional_db")
        restore_catalogue_and_roles()


# --- People ---------------------------------------------------------------------------------


def _make_user(django_user_model: Any, email: str, group: str | None = None, **extra: Any) -> Any:
    user = django_user_model.objects.create_user(
        username=email.split("@")[0], email=email, password=PASSWORD, **extra
    )
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def admin_user(django_user_model: Any) -> Any:
    return _make_user(django_user_model, "admin@example.com", is_staff=True, is_superuser=True)


@pytest.fixture
def owner(django_user_model: Any) -> Any:
    return _make_user(django_user_model, "owner@example.com", EDITORS)


@pytest.fixture
def teammate(django_user_model: Any) -> Any:
    return _make_user(django_user_model, "teammate@example.com", VIEWERS)


@pytest.fixture
def outsider(django_user_model: Any) -> Any:
    return _make_user(django_user_model, "outsider@example.com")


def client_host() -> str:
    """The host Django's test client uses: SITE_URL's (tests/settings.py), as a browser at the
    portal's own address does, since the portal starts no authorization from another one."""
    from django.conf import settings

    return urlsplit(settings.SITE_URL).netloc


@pytest.fixture
def client() -> Client:
    return Client(HTTP_HOST=client_host())


def client_for(client: Any, user: Any) -> Any:
    client.force_login(user)
    return client


# --- Domain objects --------------------------------------------------------------------------


@pytest.fixture
def oauth_client(owner: Any) -> OAuthClient:
    return OAuthClient.objects.create(
        name="Shopping app",
        environment=Environment.PRODUCTION,
        grant_type=GrantType.AUTHORIZATION_CODE,
        client_id="shopping-app-1234",
        client_secret=CLIENT_SECRET,
        created_by=owner,
    )


@pytest.fixture
def cc_client(owner: Any) -> OAuthClient:
    return OAuthClient.objects.create(
        name="Catalogue app",
        environment=Environment.CERTIFICATION,
        grant_type=GrantType.CLIENT_CREDENTIALS,
        client_id="catalogue-app-5678",
        client_secret="cc-secret-Zr4Tq8Wn2Yp6",
        created_by=owner,
    )


@pytest.fixture
def connection(oauth_client: OAuthClient, owner: Any) -> Connection:
    conn = Connection.objects.create(
        name="Store cart",
        environment=Environment.PRODUCTION,
        client=oauth_client,
        created_by=owner,
    )
    conn.scopes.set(Scope.objects.filter(name__in=["product.compact", "cart.basic:write"]))
    return conn


# --- Fake Kroger ----------------------------------------------------------------------------


@pytest.fixture
def fake_kroger(settings: Any) -> Iterator[FakeKroger]:
    """A fake Kroger on 127.0.0.1 that both environments point at (see tests/fakes)."""
    fake = FakeKroger().start()
    settings.KROGER_BASE_URLS = {"production": fake.url, "certification": fake.url}
    settings.KROGER_TIMEOUT_SECONDS = 2
    fake.timeout_sleep = 2.5
    # The browser is sent to Kroger by a redirect after a form POST: form-action must allow it.
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"]["form-action"] = [*policy["DIRECTIVES"]["form-action"], fake.url]
    settings.CONTENT_SECURITY_POLICY = policy
    yield fake
    fake.stop()


@pytest.fixture
def online(connection: Connection, fake_kroger: FakeKroger) -> Connection:
    """``connection``, authorized at the fake Kroger: Online with fresh tokens."""
    return authorize(connection, fake_kroger)


# --- Test identity provider (team SSO) -------------------------------------------------------


@pytest.fixture(scope="session")
def identity_provider(live_server: Any) -> Iterator[FakeIdentityProvider]:
    """A real OpenID Connect provider (django-oauth-toolkit) in its own process, over https."""
    callback = "/accounts/oidc/sso/login/callback/"
    # The browser reaches the live server; Django's test client is at client_host(), or
    # "testserver" when made by hand.
    idp = FakeIdentityProvider(
        live_server.url + callback,
        f"http://{client_host()}{callback}",
        "http://testserver" + callback,
    )
    idp.start()
    yield idp
    idp.stop()


@pytest.fixture
def sso(identity_provider: FakeIdentityProvider, settings: Any) -> FakeIdentityProvider:
    """The portal configured for team SSO through the test identity provider, named "Acme"."""
    from connections_app.settings import oidc_providers

    idp = identity_provider
    settings.SSO_OIDC_NAME = "Acme"
    settings.SOCIALACCOUNT_PROVIDERS = oidc_providers(
        "Acme", idp.issuer, idp.client_id, idp.client_secret
    )
    policy = copy.deepcopy(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"]["form-action"] = [*policy["DIRECTIVES"]["form-action"], idp.origin]
    settings.CONTENT_SECURITY_POLICY = policy
    return idp


# --- Browser ---------------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def chromium_args() -> list[str]:
    """Chromium trusts the stand-ins' certificate (by its key, so nothing else it would
    refuse) and no other certificate error: the portal's pages and the fakes are both real."""
    return [*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={tls.spki_fingerprint()}"]


def chromium_executable() -> str | None:
    for name in (os.environ.get("CHROMIUM_PATH", ""), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    executable = chromium_executable()
    if executable is None:
        _loud("Chromium not found: browser tests SKIPPED. Install it: apt-get install chromium")
        pytest.skip("needs Chromium (apt-get install chromium)")
    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make
    # between browser steps are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=chromium_args())
        yield instance
        instance.close()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture
def page(
    browser: Any, live_server: Any, settings: Any, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh browser page on the live portal (plain http on loopback, a secure context for
    Chromium), with settings to fit; the fake Kroger it visits is https."""
    # Every browser signs in from 127.0.0.1, and allauth counts sign-ins per address in the
    # cache table, which no test's rollback or flush empties: each test starts from zero.
    cache.clear()
    settings.SITE_URL = live_server.url
    settings.OAUTH_REDIRECT_URI = f"{live_server.url}/oauth/callback/"
    settings.ALLOWED_HOSTS = ["*"]
    settings.CSRF_TRUSTED_ORIGINS = [live_server.url]
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.SESSION_COOKIE_NAME = "portal_session"
    settings.CSRF_COOKIE_NAME = "portal_csrftoken"
    settings.SECURE_HSTS_SECONDS = 0
    context = browser.new_context(base_url=live_server.url)
    context.set_default_timeout(10_000)
    the_page = context.new_page()
    yield the_page
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        the_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def sign_in(page: Any, user: Any) -> None:
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign In").click()
    page.wait_for_url(lambda url: "/accounts/login/" not in url)
