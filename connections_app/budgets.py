"""Kroger's daily budgets: every call the portal makes to a Kroger API is counted here first.

Kroger limits each app (client ID) per API and 24-hour window, and every program using the app
shares the count, so the portal counts per OAuth 2.0 client and API (``ApiBudget``) and, where
an administrator set one, per service key and API (``KeyQuota``). ``spend`` counts a call
under the rows' locks (PostgreSQL: SELECT ... FOR UPDATE; SQLite: every transaction takes the
write lock at BEGIN), so processes and containers on one database agree on every call and a
budget is never overspent. Who spent it is kept as hourly counters (``ApiUsage``).

``budget_warning`` and ``budget_exhausted`` are the one place where those events happen: the
e-mail is sent from there once the count is committed; the webhook events are written to the
outbox by ``spend`` and ``kroger_said_spent`` inside the transaction that counted the call.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone

from connections_app import notifications, webhooks
from connections_app.models import (
    BUDGET_WARNING_SHARE,
    BUDGET_WINDOW,
    ApiBudget,
    ApiUsage,
    CallCounted,
    KeyQuota,
    OAuthClient,
    ServiceKey,
    WebhookEvent,
    api_label,
    counted_update,
    locked_row,
    seconds_until,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Refusal:
    """Why a call may not be made now; ``code`` is stable, ``message`` is for people."""

    code: str  # budget_exhausted or key_quota_exhausted
    message: str
    retry_after: int  # seconds until calls may resume


def spend(
    client: OAuthClient, api: str, key: ServiceKey | None = None, now: datetime | None = None
) -> Refusal | None:
    """Count one call of ``client`` (and ``key``) to ``api``, or say why it may not be made.

    The call is counted before it is made: a budget is a promise not to exceed Kroger's limit,
    whatever happens to the call afterwards.
    """
    now = now or timezone.now()
    counted = _spend_at_once(client, api, key, now)
    if counted is not None:
        _after_counting(counted, key, now)
        return None
    with transaction.atomic():
        budget = _locked_budget(client, api)
        quota = locked_row(KeyQuota, {"service_key": key, "api": api}) if key else None
        refusal = _refusal(budget, quota, key, now)
        if refusal is not None:
            return refusal
        budget.start_window_if_over(now)
        budget.calls += 1
        warn = _due_for_warning(budget)
        if warn:
            budget.warned_for_window = budget.window_started_at
        _write(budget, "window_started_at", "calls", "warned_for_window")
        # The webhook events, in the transaction that counted the call (e-mail waits for it).
        if warn:
            webhooks.announce_budget(WebhookEvent.BUDGET_WARNING, budget, reason="limit")
        if budget.daily_limit is not None and budget.calls == budget.daily_limit:
            webhooks.announce_budget(WebhookEvent.BUDGET_EXHAUSTED, budget, reason="limit")
        if quota is not None:
            quota.start_window_if_over(now)
            quota.calls += 1
            _write(quota, "window_started_at", "calls")
    ApiUsage.bump(now, client=client, api=api, service_key=key)
    if warn:
        budget_warning(budget)
    if budget.daily_limit is not None and budget.calls == budget.daily_limit:
        budget_exhausted(budget)  # exactly one caller makes the count reach the limit
    return None


def refund(client: OAuthClient, api: str, key: ServiceKey | None, counted_at: datetime) -> None:
    """Take back one call counted at ``counted_at`` that never reached Kroger (no connection
    could be made), from the budget, the key's quota and that hour's usage, atomically.

    Only from a window that held the call: one that started after it (the old window ran out
    and another call opened a new one, or the key's quota was created since) never counted
    it, and keeps its count."""
    held_it = {
        "window_started_at__lte": counted_at,
        "window_started_at__gt": counted_at - BUDGET_WINDOW,
        "calls__gt": 0,
    }
    with transaction.atomic():
        ApiBudget.objects.filter(client=client, api=api, **held_it).update(calls=F("calls") - 1)
        if key is not None:
            KeyQuota.objects.filter(service_key=key, api=api, **held_it).update(
                calls=F("calls") - 1
            )
        ApiUsage.objects.filter(
            hour=counted_at.replace(minute=0, second=0, microsecond=0),
            client=client,
            api=api,
            service_key=key,
            count__gt=0,
        ).update(count=F("count") - 1)


def _spend_at_once(
    client: OAuthClient, api: str, key: ServiceKey | None, now: datetime
) -> tuple[ApiBudget, bool] | None:
    """The common call, counted in one statement (PostgreSQL): the budget row exists and has
    calls left, the key has no quota for ``api``, and this hour's usage row exists. Returns the
    budget as counted and whether the usage row was bumped with it, or None when ``spend``'s
    locked path must decide (first call, spent budget, a quota, or SQLite).

    A conditional UPDATE is atomic by itself: a concurrent caller's UPDATE waits for the row
    and evaluates the conditions again on the row as this one left it, so a budget is never
    overspent. The usage row is bumped by the same statement only when the budget was."""
    db = connections[router.db_for_write(ApiBudget)]
    if db.vendor != "postgresql":
        return None
    since = now - BUDGET_WINDOW
    key_is = "= %(key)s" if key is not None else "IS NULL"
    # Table names come from the models' metadata; values are parameters.
    sql = f"""
        WITH b AS (
            UPDATE {ApiBudget._meta.db_table} SET
                window_started_at = CASE WHEN window_started_at > %(since)s
                    THEN window_started_at ELSE %(now)s END,
                calls = CASE WHEN window_started_at > %(since)s THEN calls + 1 ELSE 1 END
            WHERE client_id = %(client)s AND api = %(api)s
                AND (spent_until IS NULL OR spent_until <= %(now)s)
                AND (daily_limit IS NULL OR daily_limit >
                    CASE WHEN window_started_at > %(since)s THEN calls ELSE 0 END)
                AND NOT EXISTS (SELECT 1 FROM {KeyQuota._meta.db_table} q
                    WHERE q.service_key_id = %(key)s AND q.api = %(api)s)
            RETURNING id, daily_limit, window_started_at, calls, warned_for_window
        ), u AS (
            UPDATE {ApiUsage._meta.db_table} SET count = count + 1
            WHERE hour = %(hour)s AND client_id = %(client)s AND api = %(api)s
                AND service_key_id {key_is} AND EXISTS (SELECT 1 FROM b)
            RETURNING 1
        )
        SELECT b.*, EXISTS (SELECT 1 FROM u) FROM b
    """  # noqa: S608
    params: dict[str, Any] = {
        "since": since,
        "now": now,
        "client": client.pk,
        "api": api,
        "key": key.pk if key is not None else None,
        "hour": now.replace(minute=0, second=0, microsecond=0),
    }
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    pk, daily_limit, window_started_at, calls, warned_for_window, usage_counted = row
    budget = ApiBudget(
        pk=pk,
        client=client,
        api=api,
        daily_limit=daily_limit,
        window_started_at=window_started_at,
        calls=calls,
        warned_for_window=warned_for_window,
    )
    return budget, usage_counted


def after_counted(counted: CallCounted, key: ServiceKey) -> None:
    """What follows a proxied call counted by the statement that read the service key
    (``ServiceKey.authenticate_for``), as after one counted by ``spend``."""
    _after_counting((counted.budget, counted.usage_counted), key, counted.at)


def _after_counting(counted: tuple[ApiBudget, bool], key: ServiceKey | None, now: datetime) -> None:
    """What follows a call counted in one statement (``_spend_at_once``, ``after_counted``):
    the hour's first usage row, the 80% warning (once per window: the caller whose update
    marks the window sends it) and the exhausted event (the caller whose count reached the
    limit)."""
    budget, usage_counted = counted
    if not usage_counted:
        ApiUsage.bump(now, client=budget.client, api=budget.api, service_key=key)
    exhausted = budget.daily_limit is not None and budget.calls == budget.daily_limit
    warn = False
    if _due_for_warning(budget) or exhausted:
        with transaction.atomic():
            if _due_for_warning(budget):
                window = budget.window_started_at
                marked = (
                    ApiBudget.objects.filter(pk=budget.pk, window_started_at=window)
                    .exclude(warned_for_window=window)
                    .update(warned_for_window=window)
                )
                warn = bool(marked)
                if warn:
                    budget.warned_for_window = window
                    webhooks.announce_budget(WebhookEvent.BUDGET_WARNING, budget, reason="limit")
            if exhausted:
                webhooks.announce_budget(WebhookEvent.BUDGET_EXHAUSTED, budget, reason="limit")
    if warn:
        budget_warning(budget)
    if exhausted:
        budget_exhausted(budget)


def kroger_said_spent(
    client: OAuthClient, api: str, retry_after: int | None, now: datetime | None = None
) -> int:
    """Kroger answered 429: the app was also used outside the portal. Treat the API as spent
    until the window ends, or for ``retry_after`` seconds when Kroger said so. Returns the
    seconds until calls may resume."""
    now = now or timezone.now()
    with transaction.atomic():
        budget = _locked_budget(client, api)
        budget.start_window_if_over(now)
        ends = budget.window_ends_at(now)
        assert ends is not None
        until = now + timedelta(seconds=retry_after) if retry_after else ends
        newly_spent = not budget.spent_by_kroger(now)
        budget.spent_until = until
        _write(budget, "window_started_at", "calls", "spent_until")
        if newly_spent:
            webhooks.announce_budget(WebhookEvent.BUDGET_EXHAUSTED, budget, reason="kroger")
    logger.warning("Kroger answered 429 for client %s, API %s", client.code, api)
    if newly_spent:
        budget_exhausted(budget)
    return seconds_until(until, now)


def _locked_budget(client: OAuthClient, api: str) -> ApiBudget:
    """The client's budget row for ``api``, locked for this transaction (made on first use)."""
    budget = locked_row(ApiBudget, {"client": client, "api": api})
    if budget is None:
        ApiBudget.objects.bulk_create(
            [ApiBudget(client=client, api=api, daily_limit=ApiBudget.default_limit(client, api))],
            ignore_conflicts=True,  # made meanwhile by another caller: theirs is the one
        )
        budget = locked_row(ApiBudget, {"client": client, "api": api})
    budget.client = client  # already at hand: no query for its name
    return budget


def _write(row: ApiBudget | KeyQuota, *names: str) -> None:
    counted_update(type(row), {"id": row.pk}, {name: getattr(row, name) for name in names})


def _refusal(
    budget: ApiBudget, quota: KeyQuota | None, key: ServiceKey | None, now: datetime
) -> Refusal | None:
    label = api_label(budget.api)
    until = budget.exhausted_until(now)
    if until is not None:
        why = (
            "Kroger reported this app's limit as reached (it is also used outside the portal)"
            if budget.spent_by_kroger(now)
            else f"the daily limit of {budget.daily_limit:,} calls is reached"
        )
        return Refusal(
            "budget_exhausted",
            f"The {label} budget of the OAuth 2.0 client {budget.client.name} is spent: {why}. "
            f"It resets at {until:%Y-%m-%d %H:%M} UTC.",
            seconds_until(until, now),
        )
    if quota is not None and key is not None and quota.limit_reached(now):
        ends = quota.window_ends_at(now)
        assert ends is not None
        return Refusal(
            "key_quota_exhausted",
            f"The service key {key.name} has made its {quota.daily_limit:,} {label} calls for "
            f"the day. Its quota resets at {ends:%Y-%m-%d %H:%M} UTC.",
            seconds_until(ends, now),
        )
    return None


def _due_for_warning(budget: ApiBudget) -> bool:
    return (
        budget.daily_limit is not None
        and budget.daily_limit > 0
        and budget.calls >= BUDGET_WARNING_SHARE * budget.daily_limit
        and budget.warned_for_window != budget.window_started_at
    )


# --- What happened: one place each -----------------------------------------------------------


def budget_warning(budget: ApiBudget) -> None:
    """A client's budget for an API reached 80% of its limit (called once per window)."""
    logger.warning(
        "Budget warning: client %s, API %s, %s of %s calls",
        budget.client.code,
        budget.api,
        budget.calls,
        budget.daily_limit,
    )
    notifications.send_budget_warning(budget)


def budget_exhausted(budget: ApiBudget) -> None:
    """A client's budget for an API is spent: its limit was reached, or Kroger answered 429."""
    logger.warning("Budget spent: client %s, API %s", budget.client.code, budget.api)


# --- What the pages show ---------------------------------------------------------------------


@dataclass(frozen=True)
class BudgetLine:
    """One API's bar on the client page."""

    budget: ApiBudget
    calls: int
    resets_at: datetime | None
    keys: list[tuple[str, int]]  # (service key name, calls this window), most first
    portal_calls: int  # the portal's own calls (Test connection)

    @property
    def label(self) -> str:
        return self.budget.api_label

    @property
    def limit(self) -> int | None:
        return self.budget.daily_limit

    @property
    def warn_at(self) -> int:
        return int(BUDGET_WARNING_SHARE * (self.limit or 0))

    @property
    def percent(self) -> int:
        if not self.limit:
            return 0
        return min(100, round(100 * self.calls / self.limit))

    @property
    def warning(self) -> bool:
        return self.budget.warning()

    @property
    def spent(self) -> bool:
        return self.budget.exhausted_until(timezone.now()) is not None

    @property
    def summary(self) -> str:
        """E.g. "1,234 of 10,000 today · resets in 5 h 12 min"."""
        if self.limit is None:
            text = f"{self.calls:,} today (no limit)"
        else:
            text = f"{self.calls:,} of {self.limit:,} today"
        if self.budget.spent_by_kroger(timezone.now()):
            text += " · Kroger reported the limit reached"
        if self.resets_at is not None:
            text += f" · resets in {duration(self.resets_at - timezone.now())}"
        return text

    @property
    def shares(self) -> list[tuple[str, str]]:
        """Each service key's part of this window's calls, most first, then the portal's."""
        rows = [(name, count) for name, count in self.keys]
        if self.portal_calls:
            rows.append(("The portal (Test connection)", self.portal_calls))
        total = sum(count for _, count in rows) or 1
        return [(name, f"{count:,} ({count / total:.0%})") for name, count in rows]


def duration(delta: timedelta) -> str:
    """ "5 h 12 min", "12 min", "under a minute"."""
    minutes = int(delta.total_seconds() // 60)
    if minutes < 1:
        return "under a minute"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def set_limits(client: OAuthClient, limits: dict[str, int | None], actor: Any) -> list[str]:
    """Give ``client``'s budgets these daily limits (None: Kroger's figure for the API, or
    no limit for a Partner API client or another API), one audit event per change; returns
    the labels of the APIs changed. Only the limit is written, so that calls counted
    meanwhile stay counted."""
    from connections_app.models import AuditAction, AuditEvent

    changed = []
    with transaction.atomic():
        for budget in client.budgets.select_for_update().filter(api__in=list(limits)):
            wanted = limits[budget.api]
            if wanted is None:
                wanted = ApiBudget.default_limit(client, budget.api)
            if wanted == budget.daily_limit:
                continue
            ApiBudget.objects.filter(pk=budget.pk).update(daily_limit=wanted)
            budget.daily_limit = wanted
            limit = "no limit" if wanted is None else f"{wanted:,} calls a day"
            AuditEvent.record(
                AuditAction.CLIENT_CHANGED,
                actor=actor,
                client=client,
                detail=f"Daily limit of {budget.api_label}: {limit}",
            )
            changed.append(budget.api_label)
    return changed


def ensure_budgets(client: OAuthClient) -> None:
    """Rows for the four public APIs, so that their limits can be seen and edited early."""
    from connections_app.models import KROGER_DAILY_LIMITS

    ApiBudget.objects.bulk_create(
        [
            ApiBudget(client=client, api=api, daily_limit=ApiBudget.default_limit(client, api))
            for api in KROGER_DAILY_LIMITS
        ],
        ignore_conflicts=True,
    )


def budget_lines(client: OAuthClient, now: datetime | None = None) -> list[BudgetLine]:
    now = now or timezone.now()
    ensure_budgets(client)
    lines = []
    for budget in client.budgets.order_by("api"):
        calls = budget.calls_in_window(now)
        started = budget.window_started_at if budget.window_open(now) else None
        keys: list[tuple[str, int]] = []
        portal = 0
        if started is not None:
            shares = _shares(client, budget.api, started)
            portal = shares.pop(None, 0)
            keys = sorted(shares.items(), key=lambda item: (-item[1], item[0]))  # type: ignore[arg-type]
        lines.append(
            BudgetLine(
                budget=budget,
                calls=calls,
                resets_at=budget.exhausted_until(now) or budget.window_ends_at(now),
                keys=keys,  # type: ignore[arg-type]
                portal_calls=portal,
            )
        )
    return lines


def _shares(client: OAuthClient, api: str, since: datetime) -> dict[Any, int]:
    """Calls per service key name since the hour ``since`` falls in (hourly counters)."""
    from django.db.models import Sum

    hour = since.replace(minute=0, second=0, microsecond=0)
    rows = (
        ApiUsage.objects.filter(client=client, api=api, hour__gte=hour)
        .values("service_key__name")
        .annotate(total=Sum("count"))
    )
    return {row["service_key__name"]: row["total"] for row in rows}


def calls_today_by_key(now: datetime | None = None) -> dict[int, int]:
    """Each service key's calls through the proxy in the last 24 hours, by key id."""
    from django.db.models import Sum

    now = now or timezone.now()
    since = (now - timedelta(hours=24)).replace(minute=0, second=0, microsecond=0)
    rows = (
        ApiUsage.objects.filter(hour__gte=since, service_key__isnull=False)
        .values("service_key")
        .annotate(total=Sum("count"))
    )
    return {row["service_key"]: row["total"] for row in rows}


def clients_with_warnings(now: datetime | None = None) -> set[int]:
    """Ids of clients with a budget at 80% or more of its limit, or spent (for the list)."""
    now = now or timezone.now()
    return {
        budget.client_id
        for budget in ApiBudget.objects.filter(window_started_at__gt=now - timedelta(hours=24))
        if budget.warning(now)
    }
