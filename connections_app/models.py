"""The portal's domain: OAuth 2.0 clients, the scope catalogue, connections and their history.

Domain rules live here as methods so that forms, views, admin and commands share them.
Every secret is an ``EncryptedTextField``; nothing in this module logs or returns one
except the explicit accessors the token operations use.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import DatabaseError, OperationalError, connections, models, transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from connections_app import kroger, notifications
from connections_app.crypto import fingerprint
from connections_app.fields import EncryptedTextField

# RFC 6749 scope-token: printable ASCII except space, double quote and backslash.
logger = logging.getLogger(__name__)

scope_name_validator = RegexValidator(
    r"^[\x21\x23-\x5B\x5D-\x7E]+$",
    "A scope name is one word of printable characters, such as product.compact.",
)


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    CERTIFICATION = "certification", "Certification"

    @property
    def base_url(self) -> str:
        return str(settings.KROGER_BASE_URLS[self.value])


def environment_base_url(environment: str) -> str:
    return str(settings.KROGER_BASE_URLS[environment])


class GrantType(models.TextChoices):
    AUTHORIZATION_CODE = "authorization_code", "Authorization code"
    CLIENT_CREDENTIALS = "client_credentials", "Client credentials"


# The Kroger banners that can brand the consent page (the authorize URL's ``banner``); a
# connection without one gets Kroger's own page. Not a field's choices= so that the list can
# grow without a migration.
DEFAULT_BANNER_LABEL = "Kroger (default)"
KROGER_BANNERS: list[tuple[str, str]] = [
    ("ralphs", "Ralphs"),
    ("fredmeyer", "Fred Meyer"),
    ("harristeeter", "Harris Teeter"),
    ("kingsoopers", "King Soopers"),
    ("smithsfoodanddrug", "Smith's"),
    ("frysfood", "Fry's"),
    ("qfc", "QFC"),
    ("dillons", "Dillons"),
    ("bakersplus", "Baker's"),
    ("citymarket", "City Market"),
    ("gerbes", "Gerbes"),
    ("jaycfoods", "Jay C"),
    ("marianos", "Mariano's"),
    ("metromarket", "Metro Market"),
    ("pay-less", "Pay Less"),
    ("picknsave", "Pick 'n Save"),
    ("food4less", "Food 4 Less"),
    ("foodsco", "Foods Co"),
]


def http_basic_validator(label: str) -> RegexValidator:
    """The client ID and secret travel in an HTTP Basic header, which carries printable ASCII
    only (``requests`` fails on anything else, such as a pasted "€" or a non-breaking space)."""
    return RegexValidator(
        r"\A[\x21-\x7E]+\Z",
        f"The {label} can hold only printable ASCII characters without spaces (letters, "
        "digits and symbols such as - _ .): HTTP Basic authentication cannot carry other "
        "characters. Copy it again from developer.kroger.com.",
    )


client_id_validator = http_basic_validator("client ID")
client_secret_validator = http_basic_validator("client secret")


class Scope(models.Model):
    """The scope catalogue. Partner scopes are added by administrators in the admin."""

    name = models.CharField(max_length=100, unique=True, validators=[scope_name_validator])
    description = models.CharField(max_length=200, blank=True)
    allows_client_credentials = models.BooleanField(
        "may be used with client credentials",
        default=False,
        help_text="Scopes that act for a shopper (cart, profile) need the authorization-code "
        "grant and cannot be requested with client credentials.",
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def usable_with(self, grant_type: str) -> bool:
        return grant_type != GrantType.CLIENT_CREDENTIALS or self.allows_client_credentials

    def unusable_reason(self, grant_type: str) -> str:
        if self.usable_with(grant_type):
            return ""
        return (
            f"When the OAuth 2.0 client uses Client credentials, the {self.name} scope "
            "cannot be selected."
        )


class OAuthClient(models.Model):
    """An app registered at developer.kroger.com: its client ID and (encrypted) secret."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    environment = models.CharField(max_length=20, choices=Environment.choices)
    grant_type = models.CharField(
        max_length=30, choices=GrantType.choices, default=GrantType.AUTHORIZATION_CODE
    )
    client_id = models.CharField("client ID", max_length=200)
    client_secret = EncryptedTextField("client secret")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "OAuth 2.0 client"
        verbose_name_plural = "OAuth 2.0 clients"

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        return environment_base_url(self.environment)

    @property
    def secret_display(self) -> str:
        """What pages may show of the secret: whether it is set and a short fingerprint."""
        if not self.client_secret:
            return "not set"
        return f"set (fingerprint {fingerprint(self.client_secret)})"

    def allows_scope(self, scope: Scope) -> bool:
        return scope.usable_with(self.grant_type)

    def clean(self) -> None:
        """A client in use keeps its environment and grant type: its connections' environment,
        scopes and tokens were chosen for them."""
        if self.pk is None:
            return
        stored = (
            OAuthClient.objects.filter(pk=self.pk).only("name", "environment", "grant_type").first()
        )
        if stored is None:
            return
        changed = [
            (name, label)
            for name, label in (("environment", "environment"), ("grant_type", "grant type"))
            if getattr(self, name) != getattr(stored, name)
        ]
        if not changed:
            return
        users = list(self.connections.order_by("name").values_list("name", flat=True))
        if not users:
            return
        if len(users) == 1:
            used_by, until = f"the connection {users[0]}", "while that connection uses it"
        else:
            used_by, until = f"connections {', '.join(users)}", "while they use it"
        raise ValidationError(
            {
                name: f"The OAuth 2.0 client “{stored.name}” is used by {used_by}: its "
                f"{label} cannot change {until}."
                for name, label in changed
            }
        )


class ConnectionStatus(models.TextChoices):
    NOT_AUTHORIZED = "not_authorized", "Not authorized"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"


class TokenUnavailable(Exception):
    """No usable access token can be handed out; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class AccessToken:
    access_token: str = field(repr=False)
    token_type: str
    expires_at: datetime
    scope: str

    def __repr__(self) -> str:
        return f"AccessToken(expires_at={self.expires_at!r}, scope={self.scope!r})"


# The status reason of a connection whose grant Kroger refused: only a person can fix it.
NEEDS_REAUTHORIZATION = "Needs reauthorization"
KROGER_UNREACHABLE = "Kroger unreachable"


@dataclass
class RefreshOutcome:
    """What one locked refresh did: for its caller, the worker's log line and the emails."""

    summary: str  # one line for logs and people; never a secret
    token: AccessToken | None = None  # a still-usable token, even after a failed refresh
    error: TokenUnavailable | None = None
    notify: str = ""  # "failure", "recovery" or ""
    notify_detail: str = ""


@dataclass(frozen=True)
class ConnectionTest:
    """The result of "Test connection", for people (never the profile ID)."""

    ok: bool
    endpoint: str
    message: str


def refresh_backoff(failures: int) -> timedelta:
    """How long to wait before the next refresh after ``failures`` failures in a row."""
    return min(timedelta(minutes=1) * 2 ** max(failures - 1, 0), timedelta(minutes=30))


class Connection(models.Model):
    """A named, authorized use of an OAuth 2.0 client with a set of scopes."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField("name", max_length=100, unique=True)
    environment = models.CharField(max_length=20, choices=Environment.choices)
    client = models.ForeignKey(
        OAuthClient,
        verbose_name="OAuth 2.0 client",
        on_delete=models.PROTECT,
        related_name="connections",
    )
    scopes = models.ManyToManyField(Scope, related_name="connections")
    banner = models.CharField(
        max_length=40,
        blank=True,
        help_text="Kroger banner that brands the consent page (e.g. ralphs); blank for Kroger.",
    )

    status = models.CharField(
        max_length=20, choices=ConnectionStatus.choices, default=ConnectionStatus.NOT_AUTHORIZED
    )
    status_reason = models.CharField(max_length=255, blank=True)
    access_token = EncryptedTextField()
    refresh_token = EncryptedTextField()
    token_expires_at = models.DateTimeField(null=True, blank=True)
    granted_scopes = models.CharField(max_length=1000, blank=True)
    authorized_at = models.DateTimeField(null=True, blank=True)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    refresh_failures = models.PositiveIntegerField(default=0)
    next_refresh_at = models.DateTimeField(
        null=True, blank=True, help_text="When the worker next tries a refresh (after failures)."
    )
    failure_notified = models.BooleanField(
        default=False, help_text="People were told of a failure and will be told of recovery."
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [models.Index(fields=["status", "token_expires_at"])]

    def __str__(self) -> str:
        return self.name

    @property
    def base_url(self) -> str:
        return environment_base_url(self.environment)

    @property
    def grant_type(self) -> str:
        return self.client.grant_type

    def scope_string(self) -> str:
        """The scopes requested, space-delimited (RFC 6749 section 3.3)."""
        return " ".join(sorted(scope.name for scope in self.scopes.all()))

    @property
    def banner_display(self) -> str:
        if not self.banner:
            return DEFAULT_BANNER_LABEL
        return dict(KROGER_BANNERS).get(self.banner, self.banner)

    def clean(self) -> None:
        if self.client_id is None or not self.environment:
            return
        client = self.client
        if client.environment != self.environment:
            raise ValidationError(
                {
                    "client": f"The OAuth 2.0 client {client.name} is registered for "
                    f"{client.get_environment_display()}: choose a client registered for "
                    f"{Environment(self.environment).label}, or change the environment."
                }
            )

    @staticmethod
    def scope_problems(client: OAuthClient, scopes: Iterable[Scope]) -> list[str]:
        """Why ``scopes`` cannot be requested with ``client`` (empty when they can).

        Not part of clean(): scopes are a many-to-many set only after the row is saved, so
        the forms check the submitted ones with this before saving.
        """
        return [
            scope.unusable_reason(client.grant_type)
            for scope in scopes
            if not scope.usable_with(client.grant_type)
        ]

    @property
    def is_authorized(self) -> bool:
        return bool(self.access_token)

    def token_valid_for(self, now: datetime | None = None) -> timedelta:
        if not self.access_token or self.token_expires_at is None:
            return timedelta(0)
        return max(self.token_expires_at - (now or timezone.now()), timedelta(0))

    # How long a handed-out token must stay valid; below this it is refreshed first.
    TOKEN_SAFETY_MARGIN = timedelta(minutes=2)

    def get_access_token(self, *, actor_label: str = "") -> AccessToken:
        """A usable access token: the stored one while the connection is Online and the token
        is valid for more than ``refresh_margin()``, otherwise a refreshed one (refresh grant,
        or a new client-credentials token), obtained under a row lock so concurrent callers
        cause a single call to Kroger.

        Raises TokenUnavailable (codes: ``not_authorized``, ``needs_reauthorization``,
        ``kroger_unavailable``) when none can be had.
        """
        if self.status == ConnectionStatus.NOT_AUTHORIZED or not self.access_token:
            raise TokenUnavailable("not_authorized", "This connection has not been authorized.")
        if self.needs_reauthorization:
            raise self._needs_reauthorization_error()
        # Only an Online connection's token is handed out as is: Offline means the portal
        # knows it is expired or refused, and the locked path refreshes it or says why not.
        if (
            self.status == ConnectionStatus.ONLINE
            and self.token_valid_for() > self.refresh_margin()
        ):
            token = self.current_token()
            assert token is not None
            return token
        return self.refresh(actor_label=actor_label)

    def refresh_margin(self) -> timedelta:
        """How long the stored token must still be valid to be handed out without a refresh:
        the safety margin, or half the token's lifetime when Kroger issues tokens that short
        (else every call would refresh, and get another token just as short)."""
        obtained = max(filter(None, [self.authorized_at, self.last_refreshed_at]), default=None)
        if obtained is None or self.token_expires_at is None:
            return self.TOKEN_SAFETY_MARGIN
        return min(self.TOKEN_SAFETY_MARGIN, (self.token_expires_at - obtained) / 2)

    def _needs_reauthorization_error(self) -> TokenUnavailable:
        return TokenUnavailable(
            "needs_reauthorization",
            f"{NEEDS_REAUTHORIZATION}: Kroger no longer accepts this connection's refresh "
            "token. Authorize it again.",
        )

    @property
    def needs_reauthorization(self) -> bool:
        return (
            self.status == ConnectionStatus.OFFLINE and self.status_reason == NEEDS_REAUTHORIZATION
        )

    def usable_token(self, now: datetime | None = None) -> AccessToken | None:
        """The stored token while it is valid, if the connection is Online; an Offline
        connection's token is known to be expired or refused, so it is never handed out."""
        return self.current_token(now) if self.status == ConnectionStatus.ONLINE else None

    def current_token(self, now: datetime | None = None) -> AccessToken | None:
        """The stored access token while it has not expired (however soon it will)."""
        if self.token_valid_for(now) <= timedelta(0) or self.token_expires_at is None:
            return None
        return AccessToken(
            access_token=self.access_token,
            token_type="bearer",  # noqa: S106 (a token type, not a secret)
            expires_at=self.token_expires_at,
            scope=self.granted_scopes or self.scope_string(),
        )

    def refresh(self, force: bool = False, actor: Any = None, actor_label: str = "") -> AccessToken:
        """Get a new access token under the row lock, unless another caller just did.

        Without ``force`` (the path of ``get_access_token``) an Online connection's token still
        valid for more than ``refresh_margin()`` is returned as is, and Kroger is not called
        while a failed refresh is backing off. With ``force`` ("Refresh token" on the
        connection page) Kroger is called unless another caller refreshed while this one
        waited for the lock.
        Raises TokenUnavailable when no usable token can be had (or, with ``force``, when the
        refresh failed).
        """
        started = timezone.now()
        locked = Connection.objects.filter(pk=self.pk).select_for_update(of=("self",))
        try:
            claimed = self._refresh_claimed(
                locked, force=force, since=started, actor=actor, actor_label=actor_label
            )
        except OperationalError:
            # The lock wait ran out (PostgreSQL lock_timeout; SQLite's busy timeout).
            logger.warning("Refresh of connection %s: gave up waiting for the lock", self.code)
            raise TokenUnavailable(
                "kroger_unavailable",
                "Another refresh of this connection is still waiting for Kroger. Try again "
                "in a minute.",
            ) from None
        assert claimed is not None  # a blocking lock always gets the row
        fresh, outcome = claimed
        for model_field in self._meta.concrete_fields:  # this instance now shows the new state
            self.__dict__[model_field.attname] = fresh.__dict__[model_field.attname]
        if outcome.token is not None and not (force and outcome.error):
            return outcome.token
        assert outcome.error is not None
        raise outcome.error

    @classmethod
    def due_for_refresh(
        cls,
        *,
        now: datetime | None = None,
        window: timedelta = timedelta(minutes=5),
        max_age: timedelta = timedelta(hours=24),
    ) -> QuerySet[Connection]:
        """Connections the worker should refresh now: the token expires within ``window``, or
        an authorization-code grant was last renewed over ``max_age`` ago (so that idle ones
        never reach Kroger's six-month limit on refresh tokens). Skips those waiting for a
        person (not authorized, needs reauthorization) and those backing off after a failure.
        """
        now = now or timezone.now()
        expiring = Q(token_expires_at__isnull=True) | Q(token_expires_at__lte=now + window)
        stale_grant = Q(
            client__grant_type=GrantType.AUTHORIZATION_CODE, renewed_at__lt=now - max_age
        )
        return (
            cls.objects.alias(
                renewed_at=Coalesce("last_refreshed_at", "authorized_at", "created_at")
            )
            .exclude(status=ConnectionStatus.NOT_AUTHORIZED)
            .exclude(access_token="")
            .exclude(status=ConnectionStatus.OFFLINE, status_reason=NEEDS_REAUTHORIZATION)
            .filter(Q(next_refresh_at__isnull=True) | Q(next_refresh_at__lte=now))
            .filter(expiring | stale_grant)
        )

    @classmethod
    def expired_while_backing_off(cls, *, now: datetime | None = None) -> QuerySet[Connection]:
        """Online connections whose token has expired while a failed refresh backs off: no
        caller may have asked for a token since, so the worker looks for them (see
        ``offline_if_expired``)."""
        now = now or timezone.now()
        return cls.objects.filter(
            status=ConnectionStatus.ONLINE,
            token_expires_at__lte=now,
            next_refresh_at__gt=now,
        ).exclude(access_token="")

    @classmethod
    def offline_if_expired(
        cls, pk: int, *, actor_label: str = "worker"
    ) -> tuple[Connection, RefreshOutcome] | None:
        """The worker's cheap pass: ask for the token of a connection that expired while
        backing off, exactly as a caller of ``get_access_token`` would. Backing off, that
        makes no call to Kroger; it only marks the connection Offline and tells people once.
        The backoff is kept: the refresh still waits for ``next_refresh_at``."""
        claim = (
            cls.expired_while_backing_off()
            .filter(pk=pk)
            .select_for_update(skip_locked=True, of=("self",))
        )
        return cls._refresh_claimed(
            claim, force=False, since=None, actor=None, actor_label=actor_label
        )

    @classmethod
    def refresh_if_due(
        cls, pk: int, *, window: timedelta = timedelta(minutes=5), actor_label: str = "worker"
    ) -> tuple[Connection, RefreshOutcome] | None:
        """The worker's refresh of one connection: claimed with SKIP LOCKED (PostgreSQL), so
        that when several workers run, whoever holds the row does the work and the others move
        on; re-checked for being due under the lock, so a connection just refreshed by another
        worker is left alone. None when the connection was skipped.
        """
        now = timezone.now()
        claim = (
            cls.due_for_refresh(now=now, window=window)
            .filter(pk=pk)
            .select_for_update(skip_locked=True, of=("self",))
        )
        return cls._refresh_claimed(
            claim, force=True, since=None, actor=None, actor_label=actor_label
        )

    @classmethod
    def _refresh_claimed(
        cls,
        claim: QuerySet[Connection],
        *,
        force: bool,
        since: datetime | None,
        actor: Any,
        actor_label: str,
    ) -> tuple[Connection, RefreshOutcome] | None:
        """Lock the row ``claim`` selects, refresh it in the same transaction, then email.

        PostgreSQL: SELECT ... FOR UPDATE makes every other caller wait here until this
        transaction commits, and the row they then read holds the token obtained here.
        SQLite ignores FOR UPDATE; the settings open every transaction with BEGIN IMMEDIATE,
        so the database write lock is already held when this read runs, with the same effect.

        The HTTP call to Kroger happens while the transaction (and the lock) is open. That is
        the accepted trade-off: it is what makes concurrent callers cause exactly one token
        request, and a rotated refresh token is never lost between the call and the save. The
        call is bounded by KROGER_TIMEOUT_SECONDS; waiters give up after twice that, rather
        than hang behind a holder that is stuck.
        """
        with transaction.atomic():
            db = connections[claim.db]
            if db.vendor == "postgresql":
                with db.cursor() as cursor:  # for this transaction only
                    wait = f"{2 * int(settings.KROGER_TIMEOUT_SECONDS)}s"
                    cursor.execute("SELECT set_config('lock_timeout', %s, true)", [wait])
            connection = claim.select_related("client").first()
            if connection is None:
                return None
            outcome = connection._refresh_locked(
                force=force, since=since, actor=actor, actor_label=actor_label
            )
        connection._notify(outcome)
        return connection, outcome

    def _refresh_locked(
        self, *, force: bool, since: datetime | None, actor: Any, actor_label: str
    ) -> RefreshOutcome:
        now = timezone.now()
        if self.status == ConnectionStatus.NOT_AUTHORIZED or not self.access_token:
            error = TokenUnavailable("not_authorized", "This connection has not been authorized.")
            return RefreshOutcome("not authorized", error=error)
        refreshed_meanwhile = (
            since is not None
            and self.last_refreshed_at is not None
            and self.last_refreshed_at >= since
        )
        if self.needs_reauthorization:
            error = self._needs_reauthorization_error()
            return RefreshOutcome("needs reauthorization", error=error)
        usable = self.usable_token(now)
        fresh_enough = usable is not None and self.token_valid_for(now) > self.refresh_margin()
        if (not force and fresh_enough) or (force and refreshed_meanwhile):
            return RefreshOutcome("refreshed by another caller", token=usable)
        if not force and self.next_refresh_at is not None and self.next_refresh_at > now:
            # Backing off: every caller in the meantime would otherwise wait for its own
            # timeout, one after another, behind the lock.
            notify = self._note_expired(now)
            reason = self.status_reason or f"{KROGER_UNREACHABLE}: the last refresh failed."
            error = TokenUnavailable(
                "kroger_unavailable", f"{reason} Next try at {self.next_refresh_at:%H:%M:%S} UTC."
            )
            return RefreshOutcome(
                "backing off" + (", token expired: offline" if notify else ""),
                token=self.usable_token(now),
                error=error,
                notify=notify,
                notify_detail=self.status_reason,
            )
        try:
            response = self._request_token()
        except kroger.KrogerError as exc:
            return self._refresh_failed(exc, now=now, actor=actor, actor_label=actor_label)
        return self._refresh_succeeded(response, now=now, actor=actor, actor_label=actor_label)

    def _note_expired(self, now: datetime) -> str:
        """While a failed refresh backs off (up to 30 minutes), the token it could not renew
        may expire: the connection is then Offline, and people are told once, as when a
        refresh fails with no token left. Returns "failure" when they are to be told."""
        if self.status != ConnectionStatus.ONLINE or self.token_valid_for(now) > timedelta(0):
            return ""
        told_already = self.failure_notified
        self._set_state(
            status=ConnectionStatus.OFFLINE,
            status_reason=f"{KROGER_UNREACHABLE}: the last refresh failed and the access token "
            "has expired; the portal will try again.",
            failure_notified=True,
        )
        logger.warning("Connection %s: token expired while backing off, now offline", self.code)
        return "" if told_already else "failure"

    @sensitive_variables()  # its locals and the frames below it hold the client secret
    def _request_token(self) -> kroger.TokenResponse:
        client = self.client
        if client.grant_type == GrantType.CLIENT_CREDENTIALS:
            return kroger.client_credentials(
                environment=self.environment,
                client_id=client.client_id,
                client_secret=client.client_secret,
                scopes=sorted(scope.name for scope in self.scopes.all()),
            )
        if not self.refresh_token:
            raise kroger.KrogerError(
                "invalid_grant",
                "No refresh token is stored for this connection. Authorize it again.",
                grant=kroger.REFRESH,
            )
        return kroger.refresh_token(
            environment=self.environment,
            client_id=client.client_id,
            client_secret=client.client_secret,
            refresh_token=self.refresh_token,
        )

    def _refresh_succeeded(
        self, response: kroger.TokenResponse, *, now: datetime, actor: Any, actor_label: str
    ) -> RefreshOutcome:
        recovered = self.failure_notified
        rotated = bool(response.refresh_token)
        try:
            # A savepoint: if the save fails, the transaction stays usable to record that.
            with transaction.atomic():
                # When the answer came: a forced refresh that waited for this one uses it.
                self.last_refreshed_at = timezone.now()
                self.failure_notified = False
                self.store_tokens(
                    access_token=response.access_token,
                    expires_in=response.expires_in,
                    refresh_token=response.refresh_token,
                    granted_scopes=response.scope,
                    now=now,
                )
                AuditEvent.record(
                    AuditAction.REFRESHED,
                    actor=actor,
                    actor_label=actor_label,
                    connection=self,
                    detail=f"New access token valid for {response.expires_in // 60} minutes"
                    + ("; the refresh token was rotated" if rotated else ""),
                )
        except DatabaseError as exc:
            return self._save_failed(exc, rotated=rotated, actor=actor, actor_label=actor_label)
        assert self.token_expires_at is not None
        return RefreshOutcome(
            f"refreshed, valid until {self.token_expires_at:%H:%M:%S} UTC",
            token=self.current_token(),
            notify="recovery" if recovered else "",
        )

    def _save_failed(
        self, exc: DatabaseError, *, rotated: bool, actor: Any, actor_label: str
    ) -> RefreshOutcome:
        # Only the exception's class: database messages can quote the values being written.
        logger.error(
            "Could not save the token Kroger issued for connection %s: %s",
            self.code,
            type(exc).__name__,
        )
        self.refresh_from_db()  # drop the unsaved values; the row still holds the old ones
        if rotated and self.grant_type == GrantType.AUTHORIZATION_CODE:
            # Kroger has already invalidated the stored refresh token: retrying cannot work.
            error = kroger.KrogerError(
                "invalid_grant",
                "Kroger issued a new refresh token but the portal could not save it, so the "
                "stored one no longer works. Authorize the connection again.",
                grant=kroger.REFRESH,
            )
        else:
            error = kroger.KrogerError(
                "server", "The portal could not save the new access token.", grant=kroger.REFRESH
            )
        return self._refresh_failed(error, now=timezone.now(), actor=actor, actor_label=actor_label)

    def _refresh_failed(
        self, exc: kroger.KrogerError, *, now: datetime, actor: Any, actor_label: str
    ) -> RefreshOutcome:
        """Record a failed refresh. Stored tokens are kept: a failure never wipes them."""
        failures = self.refresh_failures + 1
        status_before = self.status
        http = f" (HTTP {exc.status})" if exc.status else ""
        why = f"{exc.kind}{http}: {exc.message}"
        if exc.grant_dead:
            # Dead grant: only a person can fix it, so the worker stops trying.
            self._set_state(
                status=ConnectionStatus.OFFLINE,
                status_reason=NEEDS_REAUTHORIZATION,
                refresh_failures=failures,
                next_refresh_at=None,
                failure_notified=True,
            )
            code, notify = "needs_reauthorization", "failure"
        else:
            retry_at = now + refresh_backoff(failures)
            prefix = KROGER_UNREACHABLE if exc.transient else "Kroger refused the refresh"
            fields: dict[str, Any] = {"refresh_failures": failures, "next_refresh_at": retry_at}
            notify = ""
            if self.usable_token(now) is None:
                # Nothing usable left (expired, or Offline: refused by Kroger): say so, and
                # tell people once.
                fields["status"] = ConnectionStatus.OFFLINE
                fields["status_reason"] = f"{prefix}: {exc.message}"[:255]
                if not self.failure_notified:
                    fields["failure_notified"] = True
                    notify = "failure"
            self._set_state(**fields)
            why += f" Next try at {retry_at:%H:%M:%S} UTC."
            code = "kroger_unavailable"
        AuditEvent.record(
            AuditAction.REFRESH_FAILED,
            actor=actor,
            actor_label=actor_label,
            connection=self,
            detail=why,
        )
        logger.warning(
            "Refresh of connection %s failed: kind=%s status=%s (was %s, now %s)",
            self.code,
            exc.kind,
            exc.status,
            status_before,
            self.status,
        )
        reason = f"{NEEDS_REAUTHORIZATION}: {exc.message}" if exc.grant_dead else exc.message
        return RefreshOutcome(
            f"refresh failed ({exc.kind}{http}), {self.get_status_display().lower()}",
            token=self.usable_token(now),
            error=TokenUnavailable(code, reason),
            notify=notify,
            notify_detail=exc.message,
        )

    def _set_state(self, **fields: Any) -> None:
        """Change status fields without a full save (no secret is written, none can be lost)."""
        fields["updated_at"] = timezone.now()
        Connection.objects.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def _notify(self, outcome: RefreshOutcome) -> None:
        if outcome.notify == "failure":
            notifications.send_failure(self, outcome.notify_detail)
        elif outcome.notify == "recovery":
            notifications.send_recovery(self)

    def test_endpoint(self) -> str:
        """The one API call "Test connection" makes, chosen from the scopes and environment."""
        scopes = set(self.granted_scopes.split()) or {scope.name for scope in self.scopes.all()}
        if (
            self.grant_type == GrantType.AUTHORIZATION_CODE
            and "profile.compact" in scopes
            and self.environment == Environment.PRODUCTION
        ):
            return "identity/profile"
        if self.grant_type == GrantType.CLIENT_CREDENTIALS or "product.compact" not in scopes:
            return "locations"
        return "products"

    def test_connection(self, *, actor: Any = None, actor_label: str = "") -> ConnectionTest:
        """One real API call with the connection's token; updates the status to match.

        Kroger forbids storing the shopper's profile ID: it is neither kept nor shown.
        """
        endpoint = self.test_endpoint()
        try:
            token = self.get_access_token(actor_label=actor_label or "connection test")
            result = self._call_test_endpoint(endpoint, token.access_token)
        except TokenUnavailable as exc:
            result = ConnectionTest(False, endpoint, exc.reason)
        except kroger.KrogerError as exc:
            result = ConnectionTest(False, endpoint, exc.message)
            if not exc.transient and not self.needs_reauthorization:
                self._set_state(
                    status=ConnectionStatus.OFFLINE,
                    status_reason=f"Test failed: {exc.message}"[:255],
                )
        else:
            if self.status == ConnectionStatus.OFFLINE and not self.needs_reauthorization:
                self._set_state(status=ConnectionStatus.ONLINE, status_reason="")
        AuditEvent.record(
            AuditAction.TESTED,
            actor=actor,
            actor_label=actor_label,
            connection=self,
            detail=f"{endpoint}: {'ok' if result.ok else 'failed'}. {result.message}",
        )
        return result

    def _call_test_endpoint(self, endpoint: str, access_token: str) -> ConnectionTest:
        if endpoint == "identity/profile":
            kroger.get_profile(environment=self.environment, access_token=access_token)
            return ConnectionTest(
                True, endpoint, "Kroger answered: the token belongs to a shopper."
            )
        if endpoint == "locations":
            body = kroger.get_locations(environment=self.environment, access_token=access_token)
            count = len(body.get("data") or [])
            return ConnectionTest(True, endpoint, f"Kroger answered: {count} stores near 45202.")
        body = kroger.get_products(environment=self.environment, access_token=access_token)
        count = len(body.get("data") or [])
        return ConnectionTest(True, endpoint, f"Kroger answered: {count} products for “milk”.")

    def disconnect(self, *, actor: Any = None, actor_label: str = "") -> None:
        """Forget the stored tokens. Kroger has no revocation endpoint: the grant stays valid
        at Kroger until it expires or the shopper removes it. Under the row lock, so that a
        refresh in flight cannot store a token after this."""
        with transaction.atomic():
            locked = Connection.objects.select_for_update(of=("self",)).get(pk=self.pk)
            locked.forget_tokens()
            AuditEvent.record(
                AuditAction.DISCONNECTED,
                actor=actor,
                actor_label=actor_label,
                connection=locked,
                detail="Stored tokens forgotten (Kroger has no revocation endpoint).",
            )
        self.refresh_from_db()

    def authorize_with(self, response: kroger.TokenResponse, *, actor: Any = None) -> None:
        """Keep the tokens of a new consent (or a first client-credentials token).

        Under the row lock, so that a refresh in flight cannot overwrite them afterwards.
        Kroger need not return ``scope``: then the scopes requested are the ones granted.
        People who were told of a failure are told now that it works again.
        """
        with transaction.atomic():
            locked = Connection.objects.select_for_update(of=("self",)).get(pk=self.pk)
            now = timezone.now()
            recovered = locked.failure_notified
            locked.failure_notified = False
            locked.authorized_at = now
            locked.store_tokens(
                access_token=response.access_token,
                expires_in=response.expires_in,
                refresh_token=response.refresh_token,
                granted_scopes=self.scope_string() if response.scope is None else response.scope,
                now=now,
            )
            AuditEvent.record(
                AuditAction.AUTHORIZED,
                actor=actor,
                connection=locked,
                detail=f"{locked.get_environment_display()}, scopes granted: "
                f"{locked.granted_scopes or 'none'}",
            )
        if recovered:
            notifications.send_recovery(locked)
        self.refresh_from_db()

    def status_display(self) -> str:
        label = self.get_status_display()
        return f"{label}: {self.status_reason}" if self.status_reason else label

    def store_tokens(
        self,
        *,
        access_token: str,
        expires_in: int,
        refresh_token: str | None = None,
        granted_scopes: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Keep a fresh token response; an omitted refresh token keeps the stored one."""
        now = now or timezone.now()
        if timedelta(seconds=expires_in) <= self.TOKEN_SAFETY_MARGIN:
            logger.warning(
                "Connection %s: Kroger issued a token valid for only %s seconds",
                self.code,
                expires_in,
            )
        self.access_token = access_token
        self.token_expires_at = now + timedelta(seconds=expires_in)
        if refresh_token:
            self.refresh_token = refresh_token
        if granted_scopes is not None:
            self.granted_scopes = granted_scopes
        self.status = ConnectionStatus.ONLINE
        self.status_reason = ""
        self.refresh_failures = 0
        self.next_refresh_at = None
        self.save()

    def mark_offline(self, reason: str) -> None:
        self.status = ConnectionStatus.OFFLINE
        self.status_reason = reason[:255]
        self.save(update_fields=["status", "status_reason", "updated_at"])

    def forget_tokens(self) -> None:
        self.access_token = ""
        self.refresh_token = ""
        self.token_expires_at = None
        self.granted_scopes = ""
        self.status = ConnectionStatus.NOT_AUTHORIZED
        self.status_reason = ""
        self.refresh_failures = 0
        self.next_refresh_at = None
        self.failure_notified = False
        self.save(update_fields=[*self.TOKEN_STATE_FIELDS, "updated_at"])

    # What the token operations own; an edit of the settings never writes these.
    TOKEN_STATE_FIELDS = (
        "access_token",
        "refresh_token",
        "token_expires_at",
        "granted_scopes",
        "status",
        "status_reason",
        "refresh_failures",
        "next_refresh_at",
        "failure_notified",
    )
    # What people edit (with the scopes, which the caller saves as a many-to-many).
    SETTINGS_FIELDS = ("name", "environment", "client", "banner")

    def save_settings(self, changed: Iterable[str] = ()) -> bool:
        """Save an edit of SETTINGS_FIELDS and nothing else.

        This instance was read when the edit began: a full save would write back the tokens
        as they were then, over a refresh token the worker rotated meanwhile (which Kroger
        has already invalidated). When ``changed`` names the client or the environment, the
        stored tokens were issued for the old ones and are forgotten. Under the row lock, so
        that a refresh in flight finishes first and none starts with the old settings.
        Returns whether tokens were forgotten.
        """
        with transaction.atomic():
            locked = Connection.objects.select_for_update(of=("self",)).get(pk=self.pk)
            self.save(update_fields=[*self.SETTINGS_FIELDS, "updated_at"])
            discard = bool({"client", "environment"} & set(changed)) and bool(
                locked.access_token or locked.refresh_token
            )
            if discard:
                locked.forget_tokens()
        for name in self.TOKEN_STATE_FIELDS:  # show the stored tokens, not the ones read before
            setattr(self, name, getattr(locked, name))
        return discard


class AuthorizationAttempt(models.Model):
    """One trip to Kroger's consent page: its ``state`` and PKCE verifier, bound to a user."""

    LIFETIME = timedelta(minutes=10)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    state_hash = models.CharField(max_length=64, unique=True)
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="authorization_attempts"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    environment = models.CharField(max_length=20, choices=Environment.choices)
    code_verifier = EncryptedTextField()
    redirect_uri = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Authorization of {self.connection_id} started {self.created_at:%Y-%m-%d %H:%M}"

    @staticmethod
    def hash_state(state: str) -> str:
        return hashlib.sha256(state.encode("utf-8")).hexdigest()

    def is_expired(self, now: datetime | None = None) -> bool:
        return (now or timezone.now()) - self.created_at > self.LIFETIME

    # Attempts are kept a day so that a late or replayed callback is told what happened.
    RETENTION = timedelta(days=1)

    @classmethod
    def begin(
        cls, *, connection: Connection, user: Any, redirect_uri: str
    ) -> tuple[AuthorizationAttempt, str]:
        """Record a new trip to the consent page; returns the attempt and its ``state``.

        Only the state's SHA-256 is stored; the PKCE verifier is stored encrypted.
        """
        now = timezone.now()
        cls.objects.filter(created_at__lt=now - cls.RETENTION).delete()
        state = kroger.new_state()
        attempt = cls.objects.create(
            state_hash=cls.hash_state(state),
            connection=connection,
            user=user,
            environment=connection.environment,
            code_verifier=kroger.new_code_verifier(),
            redirect_uri=redirect_uri,
            created_at=now,
        )
        return attempt, state

    @classmethod
    def claim(cls, state: str, user: Any) -> AuthorizationAttempt:
        """The attempt ``state`` belongs to, marked used so it can never be replayed.

        Raises AuthorizationRefused unless the state exists, is unused, is younger than
        LIFETIME and was started by ``user``.
        """
        with transaction.atomic():
            attempt = (
                cls.objects.select_for_update(of=("self",))
                .select_related("connection", "connection__client")
                .filter(state_hash=cls.hash_state(state))
                .first()
            )
            if attempt is None:
                raise AuthorizationRefused(
                    400,
                    "This authorization result does not match any authorization started here. "
                    "Start the authorization again from the connection page.",
                )
            if attempt.user_id != getattr(user, "pk", None):
                raise AuthorizationRefused(
                    403,
                    "This authorization was started by someone else. Each person completes "
                    "their own authorization: start it again from the connection page.",
                )
            if attempt.used_at is not None:
                raise AuthorizationRefused(
                    400,
                    "This authorization result was already used. Start the authorization again "
                    "from the connection page.",
                )
            if attempt.is_expired():
                raise AuthorizationRefused(
                    400,
                    "This authorization took longer than 10 minutes and has expired. Start it "
                    "again from the connection page.",
                )
            attempt.used_at = timezone.now()
            attempt.save(update_fields=["used_at"])
        return attempt


class AuthorizationRefused(Exception):
    """A callback that must not reach Kroger; ``status`` is 400 or 403, ``message`` for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class AuditAction(models.TextChoices):
    CLIENT_CREATED = "client_created", "OAuth 2.0 client created"
    CLIENT_CHANGED = "client_changed", "OAuth 2.0 client edited"
    CLIENT_DELETED = "client_deleted", "OAuth 2.0 client deleted"
    CONNECTION_CREATED = "connection_created", "Connection created"
    CONNECTION_CHANGED = "connection_changed", "Connection edited"
    CONNECTION_DELETED = "connection_deleted", "Connection deleted"
    AUTHORIZATION_STARTED = "authorization_started", "Authorization started"
    AUTHORIZED = "authorized", "Authorized"
    AUTHORIZATION_FAILED = "authorization_failed", "Authorization failed"
    REFRESHED = "refreshed", "Token refreshed"
    REFRESH_FAILED = "refresh_failed", "Refresh failed"
    TESTED = "tested", "Connection tested"
    DISCONNECTED = "disconnected", "Disconnected"
    TOKEN_ISSUED = "token_issued", "Access token handed to a service"
    SERVICE_KEY_CREATED = "service_key_created", "Service key created"
    SERVICE_KEY_REVOKED = "service_key_revoked", "Service key revoked"
    SERVICE_KEY_CHANGED = "service_key_changed", "Service key edited"
    SERVICE_KEY_DELETED = "service_key_deleted", "Service key deleted"
    KEYS_ROTATED = "keys_rotated", "Encryption keys rotated"


class AuditEvent(models.Model):
    """Who did what to which connection or client, and when. Never holds a secret value."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150, blank=True, help_text="Who acted when it was not a signed-in person."
    )
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    connection = models.ForeignKey(
        Connection, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    client = models.ForeignKey(
        OAuthClient, null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    service_key = models.ForeignKey(
        "ServiceKey", null=True, blank=True, on_delete=models.SET_NULL, related_name="events"
    )
    subject = models.CharField(max_length=200, blank=True, help_text="Name at the time.")
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["connection", "-at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.get_action_display()} {self.subject}"

    @property
    def who(self) -> str:
        if self.actor_id is not None and self.actor is not None:
            return str(self.actor.get_username())
        return self.actor_label or "system"

    @classmethod
    def record(
        cls,
        action: str,
        *,
        actor: Any = None,
        actor_label: str = "",
        connection: Connection | None = None,
        client: OAuthClient | None = None,
        service_key: ServiceKey | None = None,
        detail: str = "",
    ) -> AuditEvent:
        subject = str(connection or client or service_key or "")
        user = actor if getattr(actor, "is_authenticated", False) else None
        return cls.objects.create(
            action=action,
            actor=user,
            actor_label=actor_label,
            connection=connection,
            client=client,
            service_key=service_key,
            subject=subject[:200],
            detail=detail[:500],
        )


class ServiceKey(models.Model):
    """A key the team's own services use to fetch access tokens. Stored only as a hash."""

    PREFIX = "kcp_"

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    key_prefix = models.CharField(
        max_length=20, unique=True, help_text="The start of the key, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True)
    all_connections = models.BooleanField("may use all connections", default=False)
    connections = models.ManyToManyField(Connection, blank=True, related_name="service_keys")
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # Keys carry 256 random bits, so one SHA-256 is as safe as a slow password hash (which
    # protects guessable secrets) and keeps every API request cheap.
    @staticmethod
    def hash_key(raw: str) -> str:
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def set_new_secret(self) -> str:
        """Give this key a new random value and return it; only its hash is kept."""
        public_id = secrets.token_hex(4)
        raw = f"{self.PREFIX}{public_id}_{secrets.token_urlsafe(32)}"
        self.key_prefix = f"{self.PREFIX}{public_id}"
        self.key_hash = self.hash_key(raw)
        return raw

    @classmethod
    def create_key(
        cls,
        *,
        name: str,
        connections: Iterable[Connection] = (),
        all_connections: bool = False,
        expires_at: datetime | None = None,
        created_by: Any = None,
        actor_label: str = "",
    ) -> tuple[ServiceKey, str]:
        """A new key and its value, which is returned here once and never stored."""
        user = created_by if getattr(created_by, "is_authenticated", False) else None
        key = cls(name=name, all_connections=all_connections, expires_at=expires_at)
        key.created_by = user
        raw = key.set_new_secret()
        with transaction.atomic():
            key.save()
            if not all_connections:
                key.connections.set(list(connections))
            key.record_created(actor=user, actor_label=actor_label)
        return key, raw

    def record_created(self, *, actor: Any = None, actor_label: str = "") -> None:
        AuditEvent.record(
            AuditAction.SERVICE_KEY_CREATED,
            actor=actor,
            actor_label=actor_label,
            service_key=self,
            detail=f"{self.key_prefix}…, may use {self.scope_display()}",
        )

    @classmethod
    def authenticate(cls, raw: str, now: datetime | None = None) -> ServiceKey | None:
        """The active key with this value, or None.

        The lookup is by the hash of the presented value, so response times reveal nothing
        about stored keys; the digest comparison after it is constant-time all the same.
        """
        if not raw.startswith(cls.PREFIX) or len(raw) > 200:
            return None
        digest = cls.hash_key(raw)
        key = cls.objects.filter(key_hash=digest).first()
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            return None
        return key if key.is_active_at(now) else None

    def is_active_at(self, now: datetime | None = None) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > (now or timezone.now())

    @property
    def is_active(self) -> bool:
        return self.is_active_at()

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.is_active else "expired"

    def scope_display(self) -> str:
        if self.all_connections:
            return "all connections"
        names = [connection.name for connection in self.connections.all()]
        return ", ".join(names) if names else "no connections"

    def usable_connections(self) -> models.QuerySet[Connection]:
        if self.all_connections:
            return Connection.objects.all()
        return self.connections.all()

    def may_use(self, connection: Connection) -> bool:
        return self.all_connections or self.connections.filter(pk=connection.pk).exists()

    # Writing last_used_at on every request would double the token endpoint's writes.
    LAST_USED_PRECISION = timedelta(minutes=1)

    def note_use(self, now: datetime | None = None) -> None:
        now = now or timezone.now()
        if self.last_used_at is None or now - self.last_used_at >= self.LAST_USED_PRECISION:
            self.last_used_at = now
            ServiceKey.objects.filter(pk=self.pk).update(last_used_at=now)

    def revoke(self, *, actor: Any = None, actor_label: str = "") -> bool:
        """Stop the key working at once. Returns False when it was already revoked."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        self.save(update_fields=["revoked_at"])
        AuditEvent.record(
            AuditAction.SERVICE_KEY_REVOKED,
            actor=actor,
            actor_label=actor_label,
            service_key=self,
            detail=f"{self.key_prefix}…",
        )
        return True
