"""GET /metrics: Prometheus text, behind METRICS_TOKEN, read from the database at each scrape."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from django.db import connection as db_connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from connections_app import budgets
from connections_app.models import (
    NEEDS_REAUTHORIZATION,
    ApiBudget,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    OAuthClient,
    PortalMetric,
    ServiceKey,
    TokenHandout,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.concurrent_callers import ROOT

TOKEN = "metrics-token-for-tests-7Hq2"


@pytest.fixture
def metrics_on(settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return samples(response.content.decode())


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def seed(oauth_client: OAuthClient) -> None:
    """Three production connections (online, offline, needing reauthorization) and one
    never authorized; audit events; webhook deliveries; a worker pass."""
    rows = [
        ("Online", ConnectionStatus.ONLINE, ""),
        ("Unreachable", ConnectionStatus.OFFLINE, "Kroger unreachable: timeout"),
        ("Dead grant", ConnectionStatus.OFFLINE, NEEDS_REAUTHORIZATION),
        ("New", ConnectionStatus.NOT_AUTHORIZED, ""),
    ]
    for name, status, reason in rows:
        Connection.objects.create(
            name=name,
            environment="production",
            client=oauth_client,
            status=status,
            status_reason=reason,
        )
    for action, count in ((AuditAction.REFRESHED, 5), (AuditAction.REFRESH_FAILED, 2)):
        for _ in range(count):
            AuditEvent.record(action, actor_label="test")
    key, _ = ServiceKey.create_key(name="Shopping list service", all_connections=True)
    online = Connection.objects.get(name="Online")
    for _ in range(7):
        TokenHandout.bump(service_key=key, connection=online)
    ApiBudget.objects.create(client=oauth_client, api="products", daily_limit=10)
    for _ in range(3):
        assert budgets.spend(oauth_client, "products", key) is None
    assert budgets.spend(oauth_client, "locations") is None
    endpoint = WebhookEndpoint.objects.create(
        url="https://hooks.example.com/", secret=WebhookEndpoint.new_secret()
    )
    for state in ("pending", "pending", "pending", "failed", "delivered"):
        WebhookDelivery.objects.create(
            endpoint=endpoint, event="connection.deleted", payload="{}", state=state
        )
    PortalMetric.put(PortalMetric.WORKER_LAST_PASS, 1_800_000_000.0)


EXPECTED = {
    ("kroger_portal_connections", (("environment", "production"), ("status", "online"))): 1,
    ("kroger_portal_connections", (("environment", "production"), ("status", "offline"))): 2,
    (
        "kroger_portal_connections",
        (("environment", "production"), ("status", "not_authorized")),
    ): 1,
    ("kroger_portal_connections", (("environment", "certification"), ("status", "online"))): 0,
    (
        "kroger_portal_connections_needing_reauthorization",
        (("environment", "production"),),
    ): 1,
    (
        "kroger_portal_connections_needing_reauthorization",
        (("environment", "certification"),),
    ): 0,
    ("kroger_portal_renewals_total", (("outcome", "refreshed"),)): 5,
    ("kroger_portal_renewals_total", (("outcome", "failed"),)): 2,
    ("kroger_portal_token_handouts_total", ()): 7,
    ("kroger_portal_kroger_api_calls_total", (("api", "products"),)): 3,
    ("kroger_portal_kroger_api_calls_total", (("api", "locations"),)): 1,
    ("kroger_portal_kroger_api_calls_total", (("api", "cart"),)): 0,
    ("kroger_portal_budget_used_calls", (("api", "products"), ("client", "Shopping app"))): 3,
    ("kroger_portal_budget_limit_calls", (("api", "products"), ("client", "Shopping app"))): 10,
    ("kroger_portal_budget_used_calls", (("api", "locations"), ("client", "Shopping app"))): 1,
    (
        "kroger_portal_budget_limit_calls",
        (("api", "locations"), ("client", "Shopping app")),
    ): 1600,
    ("kroger_portal_webhook_deliveries", (("state", "pending"),)): 3,
    ("kroger_portal_webhook_deliveries", (("state", "failed"),)): 1,
    ("kroger_portal_worker_last_pass_timestamp_seconds", ()): 1_800_000_000.0,
}


@pytest.mark.django_db
def test_it_is_off_without_metrics_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 404
    assert client.post("/metrics").status_code == 404


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_on")
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_it_answers_401_without_the_token(client: Client, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}

    response = client.get("/metrics", headers=headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "kroger_portal" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_on")
def test_it_refuses_other_methods(client: Client) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert client.post("/metrics", headers=headers).status_code == 405


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_on")
def test_it_reports_aggregates_from_the_database(client: Client, oauth_client: OAuthClient) -> None:
    seed(oauth_client)

    found = scrape(client)

    for key, value in EXPECTED.items():
        assert found[key] == value, key
    # Aggregates only: no label names a connection.
    label_values = {value for _, labels in found for _, value in labels}
    assert not label_values & {"Online", "Unreachable", "Dead grant", "New"}


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_on")
def test_a_scrape_makes_the_same_queries_for_100_and_10000_connections(
    client: Client, oauth_client: OAuthClient
) -> None:
    def add(count: int, start: int) -> None:
        Connection.objects.bulk_create(
            Connection(
                name=f"Connection {start + index}",
                environment="production",
                client=oauth_client,
                status=ConnectionStatus.ONLINE if index % 3 else ConnectionStatus.OFFLINE,
                status_reason="" if index % 3 else NEEDS_REAUTHORIZATION,
            )
            for index in range(count)
        )

    add(100, 0)
    with CaptureQueriesContext(db_connection) as small:
        at_100 = scrape(client)
    add(9_900, 100)
    with CaptureQueriesContext(db_connection) as large:
        at_10000 = scrape(client)

    assert len(small.captured_queries) == len(large.captured_queries)
    assert len(large.captured_queries) <= 10
    online = ("kroger_portal_connections", (("environment", "production"), ("status", "online")))
    assert (at_100[online], at_10000[online]) == (66, 6_666)
    assert len(at_100) == len(at_10000)  # the same series, whatever the number of connections


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_gunicorn_processes_answer_the_same(oauth_client: OAuthClient) -> None:
    seed(oauth_client)
    db = db_connection.settings_dict
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DATABASE_URL": url,
        "METRICS_TOKEN": TOKEN,
    }
    ports = [free_port(), free_port()]
    servers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "connections_app.wsgi:application",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for port in ports
    ]
    try:
        answers = [wait_and_scrape(port) for port in ports]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)

    first, second = (samples(text) for text in answers)
    assert first == second
    for key, value in EXPECTED.items():
        assert first[key] == value, key


def wait_and_scrape(port: int) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            response = requests.get(
                f"http://127.0.0.1:{port}/metrics",
                headers={"Authorization": f"Bearer {TOKEN}", "Host": "127.0.0.1"},
                timeout=10,
            )
            assert response.status_code == 200, response.text[:500]
            return response.text
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.mark.django_db
@pytest.mark.usefixtures("metrics_on")
def test_the_worker_last_pass_is_zero_until_a_worker_passes(client: Client) -> None:
    from connections_app import worker

    key = ("kroger_portal_worker_last_pass_timestamp_seconds", ())
    assert scrape(client)[key] == 0
    worker.refresh_due()
    assert abs(scrape(client)[key] - timezone.now().timestamp()) < 60
