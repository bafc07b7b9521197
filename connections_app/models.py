"""The portal's domain: OAuth 2.0 clients, the scope catalogue, connections and their history.

Domain rules live here as methods so that forms, views, admin and commands share them.
Every secret is an ``EncryptedTextField``; nothing in this module logs or returns one
except the explicit accessors the token operations use.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator, URLValidator
from django.db import connections, models, router, transaction
from django.db.models import Q
from django.utils import timezone

from connections_app import renewal_policy
from connections_app.choices import ConnectionStatus, GrantType
from connections_app.crypto import fingerprint
from connections_app.environments import Environment
from connections_app.fields import UNREADABLE, EncryptedTextField, secret_state
from connections_app.validators import name_validator

logger = logging.getLogger(__name__)

# RFC 6749 scope-token: printable ASCII except space, double quote and backslash.
scope_name_validator = RegexValidator(
    r"^[\x21\x23-\x5B\x5D-\x7E]+$",
    "A scope name is one word of printable characters, such as product.compact.",
)


# Re-exported: the choices of the fields below, where the rest of the portal finds them.
__all__ = ["ConnectionStatus", "Environment", "GrantType"]


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
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    environment = models.CharField(max_length=20, choices=Environment.choices)
    grant_type = models.CharField(
        max_length=30, choices=GrantType.choices, default=GrantType.AUTHORIZATION_CODE
    )
    client_id = models.CharField("client ID", max_length=200)
    client_secret = EncryptedTextField("client secret")
    partner_api = models.BooleanField(
        "Partner API app",
        default=False,
        help_text="Kroger sets no daily limits for Partner API apps: new budgets start unlimited.",
    )
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
        return Environment(self.environment).base_url

    @property
    def secret_display(self) -> str:
        """What pages may show of the secret: whether it is set and a short fingerprint."""
        state = secret_state(self, "client_secret")
        if state == "unreadable":
            return UNREADABLE
        if state == "not set":
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


class Attention(models.IntegerChoices):
    """How much a connection needs a person, most first: the list's status filter and its
    "needs attention first" order."""

    NEEDS_REAUTHORIZATION = 0, "Needs reauthorization"
    OFFLINE = 1, "Offline"
    NOT_AUTHORIZED = 2, "Not authorized"
    ONLINE = 3, "Online"


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
# The status reason of a connection whose tokens or client secret ENCRYPTION_KEYS cannot read.
SECRETS_UNREADABLE = "Stored secrets unreadable"


class Notice(Enum):
    """Whom a token change must tell: people are told of a failure once, then of recovery."""

    NONE = ""
    FAILURE = "failure"
    RECOVERY = "recovery"


@dataclass
class Outcome:
    """What one locked token change did: for its caller, the worker's log line and e-mail."""

    summary: str  # one line for logs and people; never a secret
    token: AccessToken | None = None  # a still-usable token, even after a failed refresh
    error: TokenUnavailable | None = None
    notice: Notice = Notice.NONE
    notice_detail: str = ""  # what happened, for the failure notice; never a secret


@dataclass(frozen=True)
class ConnectionTest:
    """The result of "Test connection", for people (never the profile ID)."""

    ok: bool
    endpoint: str
    message: str


# How much a connection needs a person, computed by the database from its status, so that the
# list's status filter, its "needs attention first" order and its summary are index scans at
# any number of connections.
ATTENTION = models.Case(
    models.When(
        status=ConnectionStatus.OFFLINE,
        status_reason=NEEDS_REAUTHORIZATION,
        then=models.Value(Attention.NEEDS_REAUTHORIZATION.value),
    ),
    models.When(status=ConnectionStatus.OFFLINE, then=models.Value(Attention.OFFLINE.value)),
    models.When(
        status=ConnectionStatus.NOT_AUTHORIZED,
        then=models.Value(Attention.NOT_AUTHORIZED.value),
    ),
    default=models.Value(Attention.ONLINE.value),
)


class Connection(models.Model):
    """A named, authorized use of an OAuth 2.0 client with a set of scopes."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField("name", max_length=100, unique=True, validators=[name_validator])
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
    attention = models.GeneratedField(
        expression=ATTENTION,
        output_field=models.PositiveSmallIntegerField(choices=Attention.choices),
        db_persist=True,
    )
    handed_out_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a token was last handed out (token API, proxy, a page action); "
        "written when it changes when the next renewal is due.",
    )
    renewal_due_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the worker next renews this connection; empty when it never does.",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["renewal_due_at"], name="connection_renewal_due"),
            models.Index(fields=["attention", "name"], name="connection_attention_name"),
            # The list's summary counts only these: a few rows, however many are Online.
            models.Index(
                fields=["attention"],
                condition=Q(attention__lt=Attention.ONLINE),
                name="connection_needs_attention",
            ),
        ]
        # On PostgreSQL, migration 0011 adds a trigram index for the list's search by name.

    def __str__(self) -> str:
        return self.name

    def save(self, *args: Any, **kwargs: Any) -> None:
        """renewal_due_at is derived: every save of what it depends on recomputes it."""
        update_fields = kwargs.get("update_fields")
        if update_fields is None:
            self.renewal_due_at = renewal_policy.renewal_due(self)
        elif renewal_policy.INPUTS & set(update_fields):
            self.renewal_due_at = renewal_policy.renewal_due(self)
            if "renewal_due_at" not in update_fields:
                kwargs["update_fields"] = [*update_fields, "renewal_due_at"]
        super().save(*args, **kwargs)

    @property
    def base_url(self) -> str:
        return Environment(self.environment).base_url

    @property
    def grant_type(self) -> str:
        return self.client.grant_type

    def scope_names(self) -> list[str]:
        """The scopes requested, sorted."""
        return sorted(scope.name for scope in self.scopes.all())

    def scope_string(self) -> str:
        """The scopes requested, space-delimited (RFC 6749 section 3.3)."""
        return " ".join(self.scope_names())

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
        """Whether tokens are stored, even ones ENCRYPTION_KEYS cannot read (then: Reauthorize),
        or only a refresh token (Kroger's last answer had no usable access token)."""
        return any(
            secret_state(self, name) != "not set" for name in ("access_token", "refresh_token")
        )

    def token_valid_for(self, now: datetime | None = None) -> timedelta:
        if not self.access_token or self.token_expires_at is None:
            return timedelta(0)
        return max(self.token_expires_at - (now or timezone.now()), timedelta(0))

    @property
    def token_lapsed(self) -> bool:
        """Online, but the access token has expired: an idle connection whose grant is alive.
        The next request for its token renews it."""
        return (
            self.status == ConnectionStatus.ONLINE
            and self.token_expires_at is not None
            and self.token_expires_at <= timezone.now()
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

    def set_state(self, **fields: Any) -> None:
        """Change status fields without a full save (no secret is written, none can be lost),
        with the renewal due time they lead to."""
        fields["updated_at"] = timezone.now()
        for name, value in fields.items():
            setattr(self, name, value)
        self.renewal_due_at = fields["renewal_due_at"] = renewal_policy.renewal_due(self)
        Connection.objects.filter(pk=self.pk).update(**fields)

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
        if timedelta(seconds=expires_in) <= renewal_policy.TOKEN_SAFETY_MARGIN:
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

    def keep_refresh_token(self, refresh_token: str) -> None:
        """Keep only the refresh token of an answer whose other fields cannot be trusted:
        Kroger invalidated the stored one when it answered. The access token stays as it was
        (usable while it lasts), so nothing else of the answer is used."""
        self.refresh_token = refresh_token
        self.save(update_fields=["refresh_token", "updated_at"])

    def store_refresh_token_only(self, refresh_token: str, reason: str, now: datetime) -> None:
        """A new consent whose answer had a well-formed refresh token and nothing else usable:
        keep that refresh token, with no access token (it counts as expired), Offline for
        ``reason``; the next request gets an access token with it."""
        self.access_token = ""
        self.refresh_token = refresh_token
        self.token_expires_at = now
        self.status = ConnectionStatus.OFFLINE
        self.status_reason = reason[:255]
        self.refresh_failures = 0
        self.next_refresh_at = None
        self.save()

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
        self.handed_out_at = None
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
        "handed_out_at",
        "renewal_due_at",
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
            self._show_token_state_of(locked)  # so that the renewal due time is computed right
            self.save(update_fields=[*self.SETTINGS_FIELDS, "updated_at"])
            discard = bool({"client", "environment"} & set(changed)) and any(
                secret_state(locked, name) != "not set"
                for name in ("access_token", "refresh_token")
            )
            if discard:
                locked.forget_tokens()
                self._show_token_state_of(locked)
        return discard

    def _show_token_state_of(self, stored: Connection) -> None:
        """Show the stored tokens, not the ones read when an edit began."""
        for name in (*self.TOKEN_STATE_FIELDS, "authorized_at", "last_refreshed_at"):
            setattr(self, name, getattr(stored, name))


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
    ROLE_CHANGED = "role_changed", "Role changed"
    SIGNED_IN = "signed_in", "Signed in"
    SIGN_IN_FAILED = "sign_in_failed", "Sign-in failed"
    SIGNED_OUT = "signed_out", "Signed out"
    MFA_ADDED = "mfa_added", "Second factor added"
    MFA_REMOVED = "mfa_removed", "Second factor removed"
    SESSION_ENDED = "session_ended", "Session ended"
    AUDIT_PRUNED = "audit_pruned", "Audit log pruned"


class AuditEvent(models.Model):
    """Who did what to which connection or client, and when. Never holds a secret value."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(
        max_length=150,
        blank=True,
        help_text="Who acted: a person's name and address as they were then, or the service "
        "or command.",
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

    @staticmethod
    def person_label(user: Any) -> str:
        name, email = str(user.get_username()), str(getattr(user, "email", "") or "")
        label = f"{name} <{email}>" if email and email != name else name
        return label[:150]

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
        subject: str = "",
        detail: str = "",
    ) -> AuditEvent:
        subject = subject or str(connection or client or service_key or "")
        user = actor if getattr(actor, "is_authenticated", False) else None
        if user is not None and not actor_label:
            # Kept with the event, so the trail still says who acted once the account is gone.
            actor_label = cls.person_label(user)
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
    name = models.CharField(max_length=100, unique=True, validators=[name_validator])
    key_prefix = models.CharField(
        max_length=20, unique=True, help_text="The start of the key, to recognise it."
    )
    key_hash = models.CharField(max_length=64, unique=True)
    all_connections = models.BooleanField("may use all connections", default=False)
    connections = models.ManyToManyField(Connection, blank=True, related_name="service_keys")
    may_fetch_tokens = models.BooleanField(
        "may fetch access tokens",
        default=False,
        help_text="The token endpoint: the service then holds Kroger access tokens itself.",
    )
    may_proxy = models.BooleanField(
        "may call Kroger through the portal",
        default=True,
        help_text="The proxy: the portal adds the token, renews it and keeps the daily budgets.",
    )
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    # Set by authenticate_for: (the code asked for, the connection found or None, when read).
    _connection_read: tuple[uuid.UUID | None, Connection | None, datetime] | None = None
    hand_out_counted: HandOutCounted | None = None
    call_counted: CallCounted | None = None

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
        may_fetch_tokens: bool = False,
        may_proxy: bool = True,
        created_by: Any = None,
        actor_label: str = "",
    ) -> tuple[ServiceKey, str]:
        """A new key and its value, which is returned here once and never stored."""
        user = created_by if getattr(created_by, "is_authenticated", False) else None
        key = cls(
            name=name,
            all_connections=all_connections,
            expires_at=expires_at,
            may_fetch_tokens=may_fetch_tokens,
            may_proxy=may_proxy,
        )
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
            detail=f"{self.key_prefix}…, may use {self.scope_display()}; "
            f"allowed {self.permission_display()}",
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

    @classmethod
    def authenticate_for(
        cls,
        raw: str,
        code: uuid.UUID | str,
        now: datetime | None = None,
        *,
        hand_out_at: datetime | None = None,
        call_to: str | None = None,
    ) -> ServiceKey | None:
        """``authenticate``, reading in the same query the connection ``code`` (with its
        client) if the key may use it: one query for what every API call about a connection
        needs. ``usable_connection(code)`` then answers without another. With
        ``hand_out_at``, the query may also count a token hand-out (``hand_out_counted``;
        see ``_key_and_connection``); with ``call_to`` (an API), a proxied call to it
        (``call_counted``; see ``_key_connection_and_call``)."""
        if not raw.startswith(cls.PREFIX) or len(raw) > 200:
            return None
        digest = cls.hash_key(raw)
        wanted: uuid.UUID | None
        try:
            wanted = code if isinstance(code, uuid.UUID) else uuid.UUID(str(code))
        except ValueError:
            wanted = None  # matches no connection
        db = connections[router.db_for_read(ServiceKey)]
        call_counted = None
        read_at = timezone.now()  # before the connection (and so its token) is read
        if call_to is not None and wanted is not None and db.vendor == "postgresql":
            now = now or read_at  # the query's idea of "active" is the one below
            key, connection, call_counted = _key_connection_and_call(digest, wanted, call_to, now)
            counted = None
        else:
            key, connection, counted = _key_and_connection(digest, wanted, hand_out_at)
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            return None
        key._connection_read = (wanted, connection, read_at)
        key.hand_out_counted = counted
        key.call_counted = call_counted
        return key if key.is_active_at(now) else None

    def usable_connection(self, code: uuid.UUID | str) -> Connection | None:
        """The connection ``code`` (its client read with it) if this key may use it."""
        read = getattr(self, "_connection_read", None)
        if read is not None and str(read[0]) == str(code):
            return read[1]
        try:
            return self.usable_connections().select_related("client").get(code=code)
        except (Connection.DoesNotExist, ValueError, TypeError, ValidationError):
            return None

    def connection_read_at(self, code: uuid.UUID | str) -> datetime | None:
        """When ``authenticate_for`` read the connection ``code``, if it did: a renewal by
        another caller after that moment is one a request holding that read can use."""
        read = getattr(self, "_connection_read", None)
        if read is not None and str(read[0]) == str(code):
            return read[2]
        return None

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

    def permission_display(self) -> str:
        allowed = [
            label
            for allowed, label in (
                (self.may_fetch_tokens, "access tokens"),
                (self.may_proxy, "the Kroger proxy"),
            )
            if allowed
        ]
        return " and ".join(allowed) if allowed else "nothing"

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


# --- Kroger's daily budgets, and who spends them ------------------------------------------

# Kroger's published daily limits per app and API (KROGER.md); Partner API apps have none.
KROGER_DAILY_LIMITS: dict[str, int] = {
    "products": 10_000,
    "locations": 1_600,
    "cart": 5_000,
    "identity": 5_000,
}
KROGER_API_LABELS = {
    "products": "Products",
    "locations": "Locations",
    "cart": "Cart",
    "identity": "Identity",
}
# The first path segment of every endpoint of the four public APIs.
_API_OF_SEGMENT = {
    "products": "products",
    "locations": "locations",
    "chains": "locations",
    "departments": "locations",
    "cart": "cart",
    "identity": "identity",
}
API_NAME_LENGTH = 60
BUDGET_WINDOW = timedelta(hours=24)
# The share of a budget at which people are warned (once per window).
BUDGET_WARNING_SHARE = 0.8


def api_for_path(path: str) -> str:
    """The Kroger API a path belongs to: products, locations, cart, identity, or else its
    first path segment (lower case, so that spelling cannot dodge a limit)."""
    segment = path.lstrip("/").split("/", 1)[0].lower()[:API_NAME_LENGTH]
    return _API_OF_SEGMENT.get(segment, segment)


def api_label(api: str) -> str:
    return KROGER_API_LABELS.get(api, api)


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from ``now`` to ``moment``, rounded up, at least 1 (for Retry-After)."""
    seconds = (moment - now).total_seconds()
    return max(1, int(seconds) + (0 if seconds == int(seconds) else 1))


class CountedWindow(models.Model):
    """A count of calls in a 24-hour window that starts at the first call (Kroger's rule)."""

    daily_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Calls per 24 hours; blank for no limit."
    )
    window_started_at = models.DateTimeField(null=True, blank=True)
    calls = models.PositiveIntegerField(default=0, help_text="Calls in the current window.")

    class Meta:
        abstract = True

    def window_open(self, now: datetime) -> bool:
        return self.window_started_at is not None and now < self.window_started_at + BUDGET_WINDOW

    def calls_in_window(self, now: datetime | None = None) -> int:
        return self.calls if self.window_open(now or timezone.now()) else 0

    def window_ends_at(self, now: datetime | None = None) -> datetime | None:
        now = now or timezone.now()
        if not self.window_open(now):
            return None
        assert self.window_started_at is not None
        return self.window_started_at + BUDGET_WINDOW

    def start_window_if_over(self, now: datetime) -> None:
        if not self.window_open(now):
            self.window_started_at = now
            self.calls = 0

    def limit_reached(self, now: datetime) -> bool:
        return self.daily_limit is not None and self.calls_in_window(now) >= self.daily_limit

    @property
    def api_label(self) -> str:
        return api_label(self.api)  # type: ignore[attr-defined]


class ApiBudget(CountedWindow):
    """One OAuth 2.0 client's daily budget for one Kroger API, shared by everything that uses
    the app (Kroger counts per client ID). Counted under a row lock, so that processes and
    containers sharing the database agree on every call."""

    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="budgets")
    api = models.CharField("API", max_length=API_NAME_LENGTH)
    spent_until = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Kroger answered 429 (the app was also used elsewhere): no calls until then.",
    )
    warned_for_window = models.DateTimeField(
        null=True, blank=True, help_text="The window whose 80% warning was sent."
    )

    class Meta:
        ordering = ["client", "api"]
        verbose_name = "daily budget"
        constraints = [
            models.UniqueConstraint(fields=["client", "api"], name="one_budget_per_client_api")
        ]

    def __str__(self) -> str:
        return f"{self.client} · {self.api_label}"

    @staticmethod
    def default_limit(client: OAuthClient, api: str) -> int | None:
        return None if client.partner_api else KROGER_DAILY_LIMITS.get(api)

    def spent_by_kroger(self, now: datetime) -> bool:
        return self.spent_until is not None and self.spent_until > now

    def exhausted_until(self, now: datetime) -> datetime | None:
        """When calls may resume, if they may not now."""
        if self.spent_by_kroger(now):
            assert self.spent_until is not None
            return self.spent_until
        if self.limit_reached(now):
            # A limit of 0 with no window yet: nothing may be called for a whole window.
            return self.window_ends_at(now) or now + BUDGET_WINDOW
        return None

    def share(self, now: datetime | None = None) -> float:
        if not self.daily_limit:
            return 0.0
        return self.calls_in_window(now) / self.daily_limit

    def warning(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.spent_by_kroger(now) or (
            bool(self.daily_limit) and self.share(now) >= BUDGET_WARNING_SHARE
        )


class KeyQuota(CountedWindow):
    """An optional daily cap on one service key's calls to one API, so that one runaway
    service cannot spend the budget every other service shares."""

    service_key = models.ForeignKey("ServiceKey", on_delete=models.CASCADE, related_name="quotas")
    api = models.CharField(
        "API",
        max_length=API_NAME_LENGTH,
        help_text="products, locations, cart, identity, or another API's first path segment.",
    )

    class Meta:
        ordering = ["service_key", "api"]
        verbose_name = "per-key daily quota"
        constraints = [
            models.UniqueConstraint(fields=["service_key", "api"], name="one_quota_per_key_api")
        ]

    def __str__(self) -> str:
        return f"{self.service_key} · {self.api_label}"


def _column_value(field: Any, value: Any, db: Any) -> Any:
    if isinstance(value, models.Model):
        value = value.pk
    return field.get_db_prep_save(value, db)


def counted_update(
    model: type[models.Model],
    where: dict[str, Any],
    values: dict[str, Any] | None = None,
    *,
    add_one: str | None = None,
) -> int:
    """``UPDATE model SET … WHERE …`` written out as SQL; returns the rows changed.

    For the statements run on every API call and token hand-out (counts, budgets): there the
    ORM's building of an UPDATE took longer than running it (3.7 ms against 0.13 ms per
    statement, measured on this bench machine), and a budget's statement runs while its row
    is locked. ``where`` holds equality conditions only (None: IS NULL); values are converted
    by their fields exactly as the ORM converts them.
    """
    db = connections[router.db_for_write(model)]
    meta: Any = model._meta
    quote = db.ops.quote_name
    assignments: list[str] = []
    params: list[Any] = []
    if add_one:
        column = quote(meta.get_field(add_one).column)
        assignments.append(f"{column} = {column} + 1")
    for name, value in (values or {}).items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(_column_value(field, value, db))
    conditions: list[str] = []
    for name, value in where.items():
        field = meta.get_field(name)
        if value is None:
            conditions.append(f"{quote(field.column)} IS NULL")
        else:
            conditions.append(f"{quote(field.column)} = %s")
            params.append(_column_value(field, value, db))
    # Only quoted names from the model's metadata are interpolated; values are parameters.
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "  # noqa: S608
        f"WHERE {' AND '.join(conditions)}"
    )
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def locked_row(model: type[Any], where: dict[str, Any]) -> Any:
    """The row matching ``where`` (equality conditions), locked until the transaction ends
    (SELECT … FOR UPDATE on PostgreSQL; SQLite's transactions hold the write lock already),
    or None. Written out as SQL for the reason given in ``counted_update``."""
    db = connections[router.db_for_write(model)]
    meta: Any = model._meta
    quote = db.ops.quote_name
    conditions: list[str] = []
    params: list[Any] = []
    for name, value in where.items():
        field = meta.get_field(name)
        conditions.append(f"{quote(field.column)} = %s")
        params.append(_column_value(field, value, db))
    lock = " FOR UPDATE" if db.features.has_select_for_update else ""
    table = quote(meta.db_table)  # names from the model's metadata; values are parameters
    sql = f"SELECT * FROM {table} WHERE {' AND '.join(conditions)}{lock}"  # noqa: S608
    rows = list(model.objects.raw(sql, params))
    return rows[0] if rows else None


def _first_row(db: Any, sql: str, params: Any) -> Any:
    """The first row of ``sql``, or None. On PostgreSQL the statement is prepared on the
    connection at its first use (server-side binding), so the server parses and plans it
    once per connection rather than on every call. For the key queries that start every API
    call this matters: planning them took 0.5 to 0.6 ms, three times as long as running them
    (EXPLAIN ANALYZE on the bench database). Django's query log and execute wrappers still
    see the statement; errors are Django's as usual."""
    if db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    db.close_if_health_check_failed()
    db.ensure_connection()
    db.validate_thread_sharing()
    with db.wrap_database_errors:
        raw = _prepared_cursor_class()(db.connection)
    cursor = db.make_debug_cursor(raw) if db.queries_logged else db.make_cursor(raw)
    with cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


@functools.cache
def _prepared_cursor_class() -> type:
    import psycopg  # PostgreSQL only; its plain cursor binds parameters on the server

    class PreparedCursor(psycopg.Cursor[Any]):
        def execute(self, query: Any, params: Any = None, **options: Any) -> Any:
            return super().execute(query, params, **{**options, "prepare": True})

    return PreparedCursor


def _columns(model: type[models.Model], alias: str, db: Any) -> str:
    quote = db.ops.quote_name
    return ", ".join(f"{alias}.{quote(f.column)}" for f in model._meta.concrete_fields)


_converters_cache: dict[tuple[type[models.Model], str], list[tuple[Any, list[Any]]]] = {}


def _instance_from(model: type[Any], db: Any, values: list[Any]) -> Any:
    """A model instance from its concrete columns as ``_columns`` selects them (None for a
    row an outer join did not find), each value converted exactly as the ORM converts it."""
    if values[0] is None:
        return None
    converters = _converters_cache.get((model, db.alias))
    if converters is None:
        converters = []
        for f in model._meta.concrete_fields:
            col = f.get_col(model._meta.db_table)
            converters.append((col, db.ops.get_db_converters(col) + col.get_db_converters(db)))
        _converters_cache[(model, db.alias)] = converters
    converted = []
    for value, (col, functions) in zip(values, converters, strict=True):
        for function in functions:
            value = function(value, col, db)
        converted.append(value)
    names = [f.attname for f in model._meta.concrete_fields]
    return model.from_db(db.alias, names, converted)


@dataclass(frozen=True)
class HandOutCounted:
    """A token hand-out counted by the query that read the key (``authenticate_for``)."""

    hour: datetime
    count: int  # the hour's count with this one: 1 for the hour's first


def _key_and_connection(
    digest: str, code: uuid.UUID | None, hand_out_at: datetime | None = None
) -> tuple[ServiceKey | None, Connection | None, HandOutCounted | None]:
    """The service key with this hash and, in the same query, the connection ``code`` with
    its client when the key may use it. Written out as SQL for the reason given in
    ``counted_update``: this runs first on every API call.

    With ``hand_out_at`` (the token endpoint; PostgreSQL), the same statement also counts the
    hand-out in the hour's TokenHandout row when one is all but certain: the key is active and
    may fetch tokens, and the connection is Online with an unexpired token. The caller takes
    the count back if no token comes of it after all (``TokenHandout.take_back``)."""
    db = connections[router.db_for_read(ServiceKey)]
    counting = hand_out_at is not None and db.vendor == "postgresql"
    code_value = Connection._meta.get_field("code").get_db_prep_value(code, db) if code else None
    params: list[Any] = [code_value, digest]
    if counting:
        assert hand_out_at is not None
        hour = _hour(hand_out_at)
        params = [
            *[hour, hand_out_at, hand_out_at],
            *[code_value, digest, hand_out_at, ConnectionStatus.ONLINE.value, hand_out_at],
            *params,
        ]
    row = _first_row(db, _key_and_connection_sql(db.alias, counting), params)
    if row is None:
        return None, None, None
    key, connection = _key_and_connection_from(db, row)
    counted = None
    if counting and row[-1] is not None:
        counted = HandOutCounted(hour=hour, count=row[-1])
    return key, connection, counted


def _key_and_connection_from(db: Any, row: Any) -> tuple[ServiceKey, Connection | None]:
    """The key, and the connection with its client, from the first columns of ``row``."""
    widths = [len(m._meta.concrete_fields) for m in (ServiceKey, Connection, OAuthClient)]
    key = _instance_from(ServiceKey, db, list(row[: widths[0]]))
    connection = _instance_from(Connection, db, list(row[widths[0] : widths[0] + widths[1]]))
    if connection is not None:
        client_columns = row[widths[0] + widths[1] : sum(widths)]
        connection.client = _instance_from(OAuthClient, db, list(client_columns))
    return key, connection


@dataclass(frozen=True)
class CallCounted:
    """A proxied call counted by the query that read the key (``authenticate_for``)."""

    api: str
    at: datetime
    budget: ApiBudget  # as counted: its calls include this one
    usage_counted: bool  # whether the hour's usage row was there and bumped with it


def _key_connection_and_call(
    digest: str, code: uuid.UUID, api: str, now: datetime
) -> tuple[ServiceKey | None, Connection | None, CallCounted | None]:
    """``_key_and_connection`` for the proxy (PostgreSQL): the same statement also counts the
    call to ``api`` in the client's budget and this hour's usage when the call is all but
    certain to go out: the key is active and may proxy, the connection is Online with an
    unexpired token, the budget row has calls left in an open window (or a window to
    start), no quota applies to the key for ``api``. Otherwise nothing is counted and the
    proxy counts the call under the rows' locks (``budgets.spend``). A call refused after
    all before it is sent is refunded (``budgets.refund``).

    The budget's UPDATE is conditional and atomic by itself, as in ``budgets.spend``: a
    concurrent caller's UPDATE waits for the row and evaluates the conditions again on the
    row as this one left it, so a budget is never overspent."""
    db = connections[router.db_for_read(ServiceKey)]
    params: dict[str, Any] = {
        "code": Connection._meta.get_field("code").get_db_prep_value(code, db),
        "digest": digest,
        "now": now,
        "since": now - BUDGET_WINDOW,
        "online": ConnectionStatus.ONLINE.value,
        "api": api,
        "hour": _hour(now),
    }
    row = _first_row(db, _key_connection_and_call_sql(db.alias), params)
    if row is None:
        return None, None, None
    key, connection = _key_and_connection_from(db, row)
    budget_id, daily_limit, window_started_at, calls, warned_for_window, usage = row[-6:]
    if budget_id is None or connection is None:
        return key, connection, None
    budget = ApiBudget(
        pk=budget_id,
        client_id=connection.client_id,
        api=api,
        daily_limit=daily_limit,
        window_started_at=window_started_at,
        calls=calls,
        warned_for_window=warned_for_window,
    )
    budget.client = connection.client  # already at hand: no query for its name
    return key, connection, CallCounted(api=api, at=now, budget=budget, usage_counted=usage)


def _key_scope_sql(db: Any, code: str) -> tuple[str, str, str]:
    """The quoted key and connection tables (aliased ``k`` and ``c`` by the caller), and
    the condition that ``c`` has the code given by the parameter ``code`` and ``k`` may use
    it. Only names from the models' metadata are interpolated; values are parameters."""
    quote = db.ops.quote_name
    scope = ServiceKey._meta.get_field("connections")
    through = quote(scope.remote_field.through._meta.db_table)  # type: ignore[union-attr]
    key_column = quote(scope.m2m_column_name())  # type: ignore[attr-defined]
    connection_column = quote(scope.m2m_reverse_name())  # type: ignore[attr-defined]
    in_scope = (
        f"c.code = {code} AND (k.all_connections OR EXISTS (SELECT 1 FROM {through} t "  # noqa: S608
        f"WHERE t.{key_column} = k.id AND t.{connection_column} = c.id))"
    )
    return quote(ServiceKey._meta.db_table), quote(Connection._meta.db_table), in_scope


@functools.cache
def _key_connection_and_call_sql(alias: str) -> str:
    db = connections[alias]
    quote = db.ops.quote_name
    keys, conns, in_scope = _key_scope_sql(db, "%(code)s")
    budgets, quotas = quote(ApiBudget._meta.db_table), quote(KeyQuota._meta.db_table)
    usage = quote(ApiUsage._meta.db_table)
    open_window = "window_started_at > %(since)s"
    return (
        "WITH e AS ("  # noqa: S608
        f"SELECT k.id AS key_id, c.client_id FROM {keys} k JOIN {conns} c ON {in_scope} "
        "WHERE k.key_hash = %(digest)s AND k.may_proxy AND k.revoked_at IS NULL "
        "AND (k.expires_at IS NULL OR k.expires_at > %(now)s) "
        "AND c.status = %(online)s AND c.token_expires_at > %(now)s"
        f"), b AS (UPDATE {budgets} SET "
        f"window_started_at = CASE WHEN {open_window} THEN window_started_at ELSE %(now)s END, "
        f"calls = CASE WHEN {open_window} THEN calls + 1 ELSE 1 END "
        "WHERE client_id = (SELECT client_id FROM e) AND api = %(api)s "
        "AND (spent_until IS NULL OR spent_until <= %(now)s) "
        f"AND (daily_limit IS NULL OR daily_limit > CASE WHEN {open_window} THEN calls ELSE 0 END) "
        f"AND NOT EXISTS (SELECT 1 FROM {quotas} q "
        "WHERE q.service_key_id = (SELECT key_id FROM e) AND q.api = %(api)s) "
        "RETURNING id, daily_limit, window_started_at, calls, warned_for_window"
        f"), u AS (UPDATE {usage} SET count = count + 1 "
        "WHERE hour = %(hour)s AND client_id = (SELECT client_id FROM e) AND api = %(api)s "
        "AND service_key_id = (SELECT key_id FROM e) AND EXISTS (SELECT 1 FROM b) RETURNING 1) "
        f"SELECT {_columns(ServiceKey, 'k', db)}, {_columns(Connection, 'c', db)}, "
        f"{_columns(OAuthClient, 'o', db)}, b.id, b.daily_limit, b.window_started_at, b.calls, "
        "b.warned_for_window, EXISTS (SELECT 1 FROM u) "
        f"FROM {keys} k LEFT JOIN {conns} c ON {in_scope} "
        f"LEFT JOIN {quote(OAuthClient._meta.db_table)} o ON o.id = c.client_id "
        "LEFT JOIN b ON TRUE WHERE k.key_hash = %(digest)s"
    )


@functools.cache
def _key_and_connection_sql(alias: str, counting: bool) -> str:
    db = connections[alias]
    quote = db.ops.quote_name
    keys, conns, in_scope = _key_scope_sql(db, "%s")
    select = (
        f"SELECT {_columns(ServiceKey, 'k', db)}, {_columns(Connection, 'c', db)}, "  # noqa: S608
        f"{_columns(OAuthClient, 'o', db)}{', (SELECT count FROM h)' if counting else ''} "
        f"FROM {keys} k LEFT JOIN {conns} c ON {in_scope} "
        f"LEFT JOIN {quote(OAuthClient._meta.db_table)} o ON o.id = c.client_id "
        "WHERE k.key_hash = %s"
    )
    if not counting:
        return select
    handouts = quote(TokenHandout._meta.db_table)
    return (
        f"WITH h AS (INSERT INTO {handouts} "  # noqa: S608
        "(hour, count, first_at, last_at, service_key_id, connection_id) "
        f"SELECT %s, 1, %s, %s, k.id, c.id FROM {keys} k JOIN {conns} c ON {in_scope} "
        "WHERE k.key_hash = %s AND k.may_fetch_tokens AND k.revoked_at IS NULL "
        "AND (k.expires_at IS NULL OR k.expires_at > %s) "
        "AND c.status = %s AND c.token_expires_at > %s "
        "ON CONFLICT (hour, service_key_id, connection_id) DO UPDATE "
        f"SET count = {handouts}.count + 1, last_at = EXCLUDED.last_at RETURNING count) "
        f"{select}"
    )


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


class HourlyCounter(models.Model):
    """A count per hour instead of a row per event, so tables grow with time, not traffic."""

    hour = models.DateTimeField(db_index=True)
    count = models.PositiveIntegerField(default=0)

    objects: models.Manager[Any]

    class Meta:
        abstract = True

    @classmethod
    def bump(cls, now: datetime | None = None, **identity: Any) -> None:
        """Add one to this hour's row for ``identity``: one UPDATE. The first event of an hour
        also inserts the row (INSERT ... ON CONFLICT DO NOTHING, so that processes racing to
        insert it cannot fail or count twice) and prunes rows older than
        USAGE_RETENTION_DAYS."""
        now = now or timezone.now()
        lookup = {"hour": _hour(now), **identity}
        if cls._add_one(lookup, now):
            return
        cls.objects.bulk_create([cls(**lookup, **cls._first_values(now))], ignore_conflicts=True)
        cls._add_one(lookup, now)
        cls.prune(now)

    @classmethod
    def prune(cls, now: datetime) -> None:
        """Delete the rows older than USAGE_RETENTION_DAYS (at an hour's first event)."""
        retention = timedelta(days=settings.USAGE_RETENTION_DAYS)
        cls.objects.filter(hour__lt=_hour(now) - retention).delete()

    @classmethod
    def _add_one(cls, lookup: dict[str, Any], now: datetime) -> bool:
        return bool(counted_update(cls, lookup, add_one="count"))

    @classmethod
    def _first_values(cls, now: datetime) -> dict[str, Any]:
        return {"count": 0}


class ApiUsage(HourlyCounter):
    """Calls to one Kroger API per hour, per OAuth 2.0 client and service key (none: the
    portal's own calls, such as Test connection)."""

    client = models.ForeignKey(OAuthClient, on_delete=models.CASCADE, related_name="usage")
    api = models.CharField("API", max_length=API_NAME_LENGTH)
    service_key = models.ForeignKey(
        "ServiceKey", null=True, blank=True, on_delete=models.CASCADE, related_name="usage"
    )

    class Meta:
        ordering = ["-hour"]
        verbose_name = "API usage (per hour)"
        verbose_name_plural = "API usage (per hour)"
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "client", "api", "service_key"],
                condition=Q(service_key__isnull=False),
                name="one_usage_row_per_hour_client_api_key",
            ),
            models.UniqueConstraint(
                fields=["hour", "client", "api"],
                condition=Q(service_key__isnull=True),
                name="one_usage_row_per_hour_client_api_portal",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.client} · {api_label(self.api)}: {self.count}"


class TokenHandout(HourlyCounter):
    """Access tokens handed to one service key for one connection in one hour: who fetched
    tokens, how often, first and last time (the token itself is never recorded)."""

    service_key = models.ForeignKey(
        "ServiceKey", on_delete=models.CASCADE, related_name="token_handouts"
    )
    connection = models.ForeignKey(
        Connection, on_delete=models.CASCADE, related_name="token_handouts"
    )
    first_at = models.DateTimeField()
    last_at = models.DateTimeField()

    class Meta:
        ordering = ["-hour"]
        verbose_name = "token hand-outs (per hour)"
        verbose_name_plural = "token hand-outs (per hour)"
        constraints = [
            models.UniqueConstraint(
                fields=["hour", "service_key", "connection"], name="one_handout_row_per_hour"
            )
        ]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.service_key} → {self.connection}: {self.count}"

    @classmethod
    def _add_one(cls, lookup: dict[str, Any], now: datetime) -> bool:
        return bool(counted_update(cls, lookup, {"last_at": now}, add_one="count"))

    @classmethod
    def _first_values(cls, now: datetime) -> dict[str, Any]:
        return {"count": 0, "first_at": now, "last_at": now}

    @classmethod
    def take_back(
        cls, counted: HandOutCounted, *, service_key: ServiceKey, connection: Connection
    ) -> None:
        """Undo a count made by ``ServiceKey.authenticate_for`` when no token came of it."""
        cls.objects.filter(
            hour=counted.hour, service_key=service_key, connection=connection, count__gt=0
        ).update(count=models.F("count") - 1)


# --- Webhooks: endpoints, the outbox and its delivery log -----------------------------------


class WebhookEvent(models.TextChoices):
    CONNECTION_AUTHORIZED = "connection.authorized", "A connection was authorized"
    CONNECTION_OFFLINE = "connection.offline", "A connection went offline"
    CONNECTION_RECOVERED = "connection.recovered", "A connection works again"
    CONNECTION_NEEDS_REAUTHORIZATION = (
        "connection.needs_reauthorization",
        "A connection needs to be authorized again",
    )
    CONNECTION_DELETED = "connection.deleted", "A connection was deleted"
    BUDGET_WARNING = "budget.warning", "80% of a Kroger daily budget is spent"
    BUDGET_EXHAUSTED = "budget.exhausted", "A Kroger daily budget is spent"
    WEBHOOK_TEST = "webhook.test", "Test event (Send test event)"


class WebhookFormat(models.TextChoices):
    STANDARD = "standard", "Standard Webhooks (signed JSON)"
    SLACK = "slack", "Slack incoming webhook"


class WebhookEndpoint(models.Model):
    """A URL the portal tells of events, signed with a secret only it and the receiver know."""

    # A rolled secret keeps signing beside the new one this long, so receivers can switch.
    ROLL_OVERLAP = timedelta(hours=24)
    SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    url = models.URLField(
        "URL",
        max_length=500,
        validators=[
            URLValidator(
                schemes=["http", "https"],
                message="Enter an http:// or https:// URL.",
                code="scheme",
            )
        ],
        help_text="Where the portal POSTs events, e.g. https://hooks.example.com/kroger.",
    )
    description = models.CharField(max_length=200, blank=True)
    events = models.CharField(
        max_length=1000, blank=True, help_text="Event types, space-separated; blank for all."
    )
    format = models.CharField(
        max_length=20, choices=WebhookFormat.choices, default=WebhookFormat.STANDARD
    )
    enabled = models.BooleanField(default=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    secret = EncryptedTextField()
    previous_secret = EncryptedTextField()
    previous_secret_until = models.DateTimeField(null=True, blank=True)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="Start of the current run of failed deliveries."
    )
    lease_until = models.DateTimeField(
        null=True, blank=True, help_text="A worker is delivering to this endpoint until then."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["url", "pk"]
        verbose_name = "webhook endpoint"

    def __str__(self) -> str:
        return self.description or self.url

    @classmethod
    def new_secret(cls) -> str:
        """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
        return cls.SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")

    @property
    def event_list(self) -> list[str]:
        return self.events.split()

    def wants(self, event: str) -> bool:
        return event == WebhookEvent.WEBHOOK_TEST or not self.events or event in self.event_list

    def events_display(self) -> str:
        return ", ".join(self.event_list) if self.events else "all events"

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets that sign a delivery now: the current one, and a rolled one for a day."""
        now = now or timezone.now()
        keys = [self.secret]
        if (
            self.previous_secret
            and self.previous_secret_until is not None
            and self.previous_secret_until > now
        ):
            keys.append(self.previous_secret)
        return keys

    def roll_secret(self, now: datetime | None = None) -> str:
        """A new secret, returned once; the old one goes on signing for ROLL_OVERLAP."""
        now = now or timezone.now()
        raw = self.new_secret()
        self.previous_secret = self.secret
        self.previous_secret_until = now + self.ROLL_OVERLAP
        self.secret = raw
        self.save(update_fields=["secret", "previous_secret", "previous_secret_until"])
        return raw


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class WebhookDelivery(models.Model):
    """The outbox: one event for one endpoint, written in the transaction of the change it
    reports, so that a rolled-back change sends nothing and a committed one is always sent."""

    code = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event = models.CharField(max_length=60)
    payload = models.TextField(help_text="The JSON body, as signed.")
    created_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(
        max_length=20, choices=DeliveryState.choices, default=DeliveryState.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["pk"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["endpoint", "state", "id"]),
            models.Index(fields=["state", "next_attempt_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.event} to {self.endpoint_id} ({self.state})"

    @property
    def webhook_id(self) -> str:
        """The ``webhook-id`` header: the same on every attempt, for receivers to deduplicate."""
        return f"msg_{self.code.hex}"


class WebhookAttempt(models.Model):
    """One try at a delivery: the endpoint's delivery log."""

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="log")
    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="tries")
    at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=60)
    attempt = models.PositiveIntegerField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    error = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["endpoint", "-at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.event} #{self.attempt}: {self.outcome}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def outcome(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code else (self.error or "no answer")


class PortalMetric(models.Model):
    """Values /metrics reads that no other table holds, such as the worker's last pass."""

    WORKER_LAST_PASS = "worker_last_pass"  # noqa: S105 (a name)

    name = models.CharField(max_length=100)
    label = models.CharField(max_length=100, blank=True)
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "label"], name="portal_metric_unique")
        ]

    def __str__(self) -> str:
        return f"{self.name}{{{self.label}}} {self.value}"

    @classmethod
    def put(cls, name: str, value: float, label: str = "") -> None:
        cls.objects.update_or_create(name=name, label=label, defaults={"value": value})
