"""``GET /metrics``: the portal's state in the Prometheus text format.

Every value is read from the database when Prometheus scrapes (a custom collector), so every
gunicorn process and every web container answers the same. Aggregates only: no label names a
connection, so the number of series does not grow with the number of connections, and a
scrape makes the same few queries however many there are.

Counters of what happened are sums of what the portal keeps anyway: renewals of the audit
trail, token hand-outs and Kroger API calls of the hourly usage counters. Pruning either lowers
them, which Prometheus' ``rate()`` and ``increase()`` read as a counter reset.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator

from django.conf import settings
from django.db.models import Count, Q, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connections_app.models import (
    KROGER_DAILY_LIMITS,
    NEEDS_REAUTHORIZATION,
    ApiBudget,
    ApiUsage,
    AuditAction,
    AuditEvent,
    Connection,
    ConnectionStatus,
    DeliveryState,
    Environment,
    PortalMetric,
    TokenHandout,
    WebhookDelivery,
)

PREFIX = "kroger_portal_"


class PortalCollector(Collector):
    """Reads the database at each scrape: one query per family of metrics."""

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._audit_counters()
        yield from self._usage_counters()
        yield from self._budgets()
        yield from self._webhooks()
        yield from self._worker()

    def _connections(self) -> Iterator[Metric]:
        rows = (
            Connection.objects.order_by()
            .values("status", "environment")
            .annotate(
                count=Count("pk"),
                reauthorize=Count(
                    "pk",
                    filter=Q(status=ConnectionStatus.OFFLINE, status_reason=NEEDS_REAUTHORIZATION),
                ),
            )
        )
        counts = {
            (status, env): 0 for status in ConnectionStatus.values for env in Environment.values
        }
        reauthorize = dict.fromkeys(Environment.values, 0)
        for row in rows:
            counts[(row["status"], row["environment"])] = row["count"]
            reauthorize[row["environment"]] = (
                reauthorize.get(row["environment"], 0) + row["reauthorize"]
            )
        by_status = GaugeMetricFamily(
            PREFIX + "connections",
            "Connections by status and environment.",
            labels=["status", "environment"],
        )
        for (status, environment), count in sorted(counts.items()):
            by_status.add_metric([status, environment], count)
        yield by_status
        needing = GaugeMetricFamily(
            PREFIX + "connections_needing_reauthorization",
            "Connections whose grant Kroger refused: a person must authorize them again.",
            labels=["environment"],
        )
        for environment, count in sorted(reauthorize.items()):
            needing.add_metric([environment], count)
        yield needing

    def _audit_counters(self) -> Iterator[Metric]:
        actions = [AuditAction.REFRESHED, AuditAction.REFRESH_FAILED]
        counted = dict.fromkeys(actions, 0)
        rows = (
            AuditEvent.objects.order_by()
            .filter(action__in=actions)
            .values("action")
            .annotate(count=Count("pk"))
        )
        for row in rows:
            counted[row["action"]] = row["count"]
        renewals = CounterMetricFamily(
            PREFIX + "renewals",
            "Token renewals (refresh or new client-credentials token) by outcome.",
            labels=["outcome"],
        )
        renewals.add_metric(["refreshed"], counted[AuditAction.REFRESHED])
        renewals.add_metric(["failed"], counted[AuditAction.REFRESH_FAILED])
        yield renewals

    def _usage_counters(self) -> Iterator[Metric]:
        handed_out = TokenHandout.objects.order_by().aggregate(total=Sum("count"))["total"]
        handouts = CounterMetricFamily(
            PREFIX + "token_handouts",
            "Access tokens handed to services through the service API.",
        )
        handouts.add_metric([], handed_out or 0)
        yield handouts
        calls = CounterMetricFamily(
            PREFIX + "kroger_api_calls",
            "Calls to Kroger's APIs through the portal (the proxy and Test connection), by API.",
            labels=["api"],
        )
        rows = ApiUsage.objects.order_by().values("api").annotate(total=Sum("count"))
        totals = dict.fromkeys(KROGER_DAILY_LIMITS, 0)
        totals.update({row["api"]: row["total"] for row in rows})
        for api, total in sorted(totals.items()):
            calls.add_metric([api], total)
        yield calls

    def _budgets(self) -> Iterator[Metric]:
        """Per OAuth 2.0 client and API: a handful of apps, never one series per connection."""
        now = timezone.now()
        used = GaugeMetricFamily(
            PREFIX + "budget_used_calls",
            "Calls counted in the current 24-hour window of a Kroger daily budget.",
            labels=["client", "api"],
        )
        limit = GaugeMetricFamily(
            PREFIX + "budget_limit_calls",
            "The daily limit of a Kroger budget (absent when it has none).",
            labels=["client", "api"],
        )
        for budget in ApiBudget.objects.select_related("client").order_by("client__name", "api"):
            labels = [budget.client.name, budget.api]
            used.add_metric(labels, budget.calls_in_window(now))
            if budget.daily_limit is not None:
                limit.add_metric(labels, budget.daily_limit)
        yield used
        yield limit

    def _webhooks(self) -> Iterator[Metric]:
        counted = dict.fromkeys([DeliveryState.PENDING, DeliveryState.FAILED], 0)
        rows = (
            WebhookDelivery.objects.order_by()
            .filter(state__in=list(counted))
            .values("state")
            .annotate(count=Count("pk"))
        )
        for row in rows:
            counted[row["state"]] = row["count"]
        deliveries = GaugeMetricFamily(
            PREFIX + "webhook_deliveries",
            "Webhook deliveries waiting to be sent, and those that failed (kept "
            "WEBHOOK_LOG_DAYS days).",
            labels=["state"],
        )
        for state, count in counted.items():
            deliveries.add_metric([str(state)], count)
        yield deliveries

    def _worker(self) -> Iterator[Metric]:
        last = (
            PortalMetric.objects.filter(name=PortalMetric.WORKER_LAST_PASS)
            .values_list("value", flat=True)
            .first()
        )
        last_pass = GaugeMetricFamily(
            PREFIX + "worker_last_pass_timestamp_seconds",
            "When a worker last finished a pass (Unix time; 0 if never).",
        )
        last_pass.add_metric([], last or 0)
        yield last_pass


def exposition() -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PortalCollector())
    return generate_latest(registry)


def metrics(request: HttpRequest) -> HttpResponse:
    """Off (404, whatever the method) unless METRICS_TOKEN is set; then only GET, only for
    ``Authorization: Bearer <METRICS_TOKEN>``."""
    expected = settings.METRICS_TOKEN
    if not expected:
        raise Http404
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        response = HttpResponse(
            "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    else:
        response = HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
