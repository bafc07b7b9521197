"""Forms for OAuth 2.0 clients and connections, in the words of Kroger's developer portal."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Count, QuerySet

from connections_app.fields import UNREADABLE, secret_state
from connections_app.models import (
    DEFAULT_BANNER_LABEL,
    KROGER_BANNERS,
    ApiBudget,
    Attention,
    Connection,
    Environment,
    GrantType,
    OAuthClient,
    Scope,
    client_id_validator,
    client_secret_validator,
)


def banner_field() -> forms.ChoiceField:
    return forms.ChoiceField(
        label="Kroger banner",
        choices=[("", DEFAULT_BANNER_LABEL), *KROGER_BANNERS],
        required=False,
        help_text="The store brand Kroger's sign-in and consent page shows.",
    )


def changed_labels(form: forms.BaseForm) -> list[str]:
    """What an edit changes, by field label (never a value), for the audit trail."""
    return [str(form[name].label) for name in form.changed_data]


def environment_choices() -> list[tuple[str, str]]:
    """Each environment with its base URL, read from settings at form time."""
    return [
        (environment.value, f"{environment.label} ({environment.base_url})")
        for environment in Environment
    ]


class ClientSelect(forms.Select):
    """A select whose options tell the page each client's environment and grant type."""

    def create_option(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        option: dict[str, Any] = super().create_option(*args, **kwargs)
        client = getattr(option["value"], "instance", None)
        if isinstance(client, OAuthClient):
            option["attrs"]["data-environment"] = client.environment
            option["attrs"]["data-grant-type"] = client.grant_type
        return option


class OAuthClientForm(forms.ModelForm):
    client_secret = forms.CharField(
        label="Client secret",
        strip=True,
        validators=[client_secret_validator],
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
    )

    class Meta:
        model = OAuthClient
        fields = ["name", "environment", "grant_type", "client_id"]
        labels = {"name": "Name", "grant_type": "Grant type", "client_id": "Client ID"}
        error_messages = {
            "name": {"unique": "An OAuth 2.0 client with this name already exists."},
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The form also opens in a dialog over the connection panel: its ids must differ.
        kwargs.setdefault("auto_id", "client_%s")
        super().__init__(*args, **kwargs)
        self.fields["environment"] = forms.ChoiceField(
            label="Environment", choices=environment_choices()
        )
        self.fields["client_id"].widget.attrs.update({"autocomplete": "off", "spellcheck": "false"})
        self.fields["client_id"].validators.append(client_id_validator)
        if self.instance.pk:
            secret = self.fields["client_secret"]
            if secret_state(self.instance, "client_secret") == "unreadable":
                secret.help_text = (
                    f"The stored secret is {UNREADABLE}: ENCRYPTION_KEYS cannot decrypt it."
                )
                secret.error_messages["required"] = (
                    "Enter the client secret again: the stored one cannot be decrypted."
                )
            else:
                secret.required = False
                secret.help_text = (
                    f"Leave blank to keep the stored secret: {self.instance.secret_display}."
                )

    def save(self, commit: bool = True) -> OAuthClient:
        client: OAuthClient = super().save(commit=False)
        secret = self.cleaned_data.get("client_secret")
        if secret:
            client.client_secret = secret
        if commit:
            client.save()
        return client


@dataclass(frozen=True)
class ScopeOption:
    """One scope as the panel shows it: whether it is chosen and, if not usable, why."""

    name: str
    description: str
    checked: bool
    allows_client_credentials: bool
    client_credentials_reason: str
    reason: str

    @property
    def disabled(self) -> bool:
        return bool(self.reason)


class ConnectionRulesForm(forms.ModelForm):
    """Base of every form that edits a connection (the panel and the admin): the scopes must
    suit the client's grant type. The client's environment is checked by Connection.clean."""

    def clean(self) -> dict[str, Any]:
        # The client's environment is checked by Connection.clean.
        cleaned = super().clean() or {}
        client: OAuthClient | None = cleaned.get("client")
        scopes = cleaned.get("scopes")
        if client is not None and scopes is not None:
            for problem in Connection.scope_problems(client, scopes):
                self.add_error("scopes", problem)
        return cleaned


class ConnectionForm(ConnectionRulesForm):
    environment = forms.ChoiceField(label="Environment", choices=environment_choices)
    client = forms.ModelChoiceField(
        label="OAuth 2.0 client",
        queryset=OAuthClient.objects.order_by("name"),
        to_field_name="code",
        empty_label="Choose a client",
        widget=ClientSelect,
    )
    scopes = forms.ModelMultipleChoiceField(
        label="Scopes",
        queryset=Scope.objects.order_by("name"),
        to_field_name="name",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )

    banner = banner_field()

    class Meta:
        model = Connection
        fields = ["name", "environment", "client", "scopes", "banner"]
        labels = {"name": "Name your connection"}
        error_messages = {
            "name": {"unique": "A connection with this name already exists. Choose another name."},
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The select's values are client codes; a model form's initial value is the primary key.
        if self.instance.pk and "client" not in kwargs.get("initial", {}):
            self.initial["client"] = str(self.instance.client.code)
        if isinstance(self.initial.get("client"), OAuthClient):
            self.initial["client"] = str(self.initial["client"].code)

    def chosen_client(self) -> OAuthClient | None:
        code = self["client"].value()
        if not code:
            return None
        try:
            return OAuthClient.objects.filter(code=code).first()
        except ValidationError:  # not a UUID: whatever the browser sent
            return None

    def scope_options(self) -> list[ScopeOption]:
        """The scope catalogue with what is chosen and what the chosen client cannot use."""
        chosen = {
            scope.name if isinstance(scope, Scope) else str(scope)
            for scope in (self["scopes"].value() or [])
        }
        client = self.chosen_client()
        grant_type = client.grant_type if client else GrantType.AUTHORIZATION_CODE
        return [
            ScopeOption(
                name=scope.name,
                description=scope.description,
                checked=scope.name in chosen,
                allows_client_credentials=scope.allows_client_credentials,
                client_credentials_reason=scope.unusable_reason(GrantType.CLIENT_CREDENTIALS),
                reason=scope.unusable_reason(grant_type),
            )
            for scope in Scope.objects.order_by("name")
        ]


# The status filter's values (kept in the URL) and what each selects.
STATUS_FILTERS = {
    "online": Attention.ONLINE,
    "offline": Attention.OFFLINE,
    "needs_reauthorization": Attention.NEEDS_REAUTHORIZATION,
    "not_authorized": Attention.NOT_AUTHORIZED,
}
STATUS_FILTER_OF = {attention: value for value, attention in STATUS_FILTERS.items()}


class ConnectionFilterForm(forms.Form):
    """The connections list's search, filters and order, read from the URL (GET)."""

    q = forms.CharField(label="Search by name", required=False, max_length=100, strip=True)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=[("", "Any status")]
        + [(value, attention.label) for value, attention in STATUS_FILTERS.items()],
    )
    environment = forms.ChoiceField(
        label="Environment", required=False, choices=[("", "Any environment"), *Environment.choices]
    )
    client = forms.ModelChoiceField(
        label="OAuth 2.0 client",
        required=False,
        queryset=OAuthClient.objects.order_by("name"),
        to_field_name="code",
        empty_label="Any client",
    )
    sort = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[("name", "Name"), ("attention", "Needs attention first")],
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "filter_%s")
        super().__init__(*args, **kwargs)
        self.fields["q"].widget = forms.TextInput(attrs={"type": "search"})

    def filter(self, connections: QuerySet[Connection]) -> QuerySet[Connection]:
        """``connections`` as asked for; a value that is not valid is left out, and the form
        says why next to its field."""
        self.is_valid()  # an invalid field is left out of cleaned_data
        cleaned = self.cleaned_data
        if cleaned.get("q"):
            connections = connections.filter(name__icontains=cleaned["q"])
        if cleaned.get("status"):
            connections = connections.filter(attention=STATUS_FILTERS[cleaned["status"]])
        if cleaned.get("environment"):
            connections = connections.filter(environment=cleaned["environment"])
        if cleaned.get("client"):
            connections = connections.filter(client=cleaned["client"])
        if cleaned.get("sort") == "attention":
            return connections.order_by("attention", "name")
        return connections.order_by("name")

    @property
    def active(self) -> bool:
        """Whether anything narrows the list (the order does not)."""
        return any(self.data.get(name) for name in ("q", "status", "environment", "client"))


def attention_summary() -> list[tuple[str, int, str]]:
    """What needs attention, for the line above the list: (status filter value, how many,
    sentence), most urgent first. Empty when all is well. One index-only scan of the partial
    index that holds only the connections needing attention, so it costs what they number,
    not what all connections do."""
    counts = dict(
        Connection.objects.filter(attention__lt=Attention.ONLINE)
        .values_list("attention")
        .annotate(count=Count("*"))
        .values_list("attention", "count")
    )
    sentences = {
        Attention.NEEDS_REAUTHORIZATION: ("needs reauthorization", "need reauthorization"),
        Attention.OFFLINE: ("is offline", "are offline"),
        Attention.NOT_AUTHORIZED: ("is not authorized", "are not authorized"),
    }
    summary = []
    for attention, (one, many) in sentences.items():
        count = counts.get(attention, 0)
        if count:
            noun = "connection" if count == 1 else "connections"
            summary.append(
                (
                    STATUS_FILTER_OF[attention],
                    count,
                    f"{count} {noun} {one if count == 1 else many}",
                )
            )
    return summary


# The largest daily limit accepted: far above any of Kroger's, small enough for the column.
MAX_DAILY_LIMIT = 10_000_000


class BudgetLimitsForm(forms.Form):
    """A client's daily limit per API, on its page. Blank: Kroger's published figure (none
    for a Partner API client, or for an API Kroger publishes none for)."""

    def __init__(self, client: OAuthClient, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        from connections_app.budgets import ensure_budgets

        self.client = client
        ensure_budgets(client)
        for budget in client.budgets.order_by("api"):
            default = ApiBudget.default_limit(client, budget.api)
            help_text = (
                f"Blank: Kroger's {default:,} calls a day."
                if default is not None
                else "Blank: no limit" + (" (a Partner API client)." if client.partner_api else ".")
            )
            self.fields[budget.api] = forms.IntegerField(
                label=budget.api_label,
                required=False,
                min_value=0,
                max_value=MAX_DAILY_LIMIT,
                initial=budget.daily_limit,
                help_text=help_text,
                error_messages={
                    "invalid": "Enter a whole number of calls a day, or leave it blank.",
                    "min_value": "Enter 0 or more calls a day (0 stops every call).",
                    "max_value": f"Enter at most {MAX_DAILY_LIMIT:,} calls a day.",
                },
                widget=forms.NumberInput(attrs={"class": "days"}),
            )

    def save(self, actor: Any) -> list[str]:
        from connections_app.budgets import set_limits

        return set_limits(self.client, dict(self.cleaned_data), actor)
