from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, transaction
from django.db import connection as db_connection
from django.db.models import ProtectedError, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import (
    require_GET,
    require_http_methods,
    require_POST,
    require_safe,
)

from connections_app import budgets, changes, consent, lifecycle, site_address
from connections_app.access import (
    can_edit,
    get_client_for_user,
    get_connection_for_user,
    require_editor,
    require_viewer,
    role_of,
)
from connections_app.accounts import reauthenticate_first
from connections_app.forms import (
    BudgetLimitsForm,
    ConnectionFilterForm,
    ConnectionForm,
    OAuthClientForm,
    attention_summary,
    changed_labels,
)
from connections_app.key_ring_check import unreadable_secrets
from connections_app.lifecycle import Actor
from connections_app.models import (
    Connection,
    ConnectionStatus,
    GrantType,
    OAuthClient,
    TokenUnavailable,
)

PAGE_SIZE = 25

# A page with a form answers GET (and HEAD) and POST; any other method is a 405.
require_form_methods = require_http_methods(["GET", "HEAD", "POST"])
HISTORY_SIZE = 50  # events shown on a connection page, newest first


@dataclass(frozen=True)
class UncountedPage:
    """One page of the connections list, read without counting the whole list: PAGE_SIZE + 1
    rows are read, and the extra one says whether there is a next page. ("Page 3 of 4,000"
    would need a COUNT(*) that reads every matching row at every view, and grows with them.)
    """

    number: int
    object_list: list[Connection]
    has_next: bool

    @classmethod
    def of(cls, connections: QuerySet[Connection], asked: str | None) -> UncountedPage:
        asked = asked or ""
        digits = asked.isascii() and asked.isdigit()
        number = int(asked) if digits and 0 < int(asked) < 10**6 else 1
        start = (number - 1) * PAGE_SIZE
        rows = list(connections[start : start + PAGE_SIZE + 1])
        return cls(number, rows[:PAGE_SIZE], has_next=len(rows) > PAGE_SIZE)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def previous_page_number(self) -> int:
        return self.number - 1

    @property
    def next_page_number(self) -> int:
        return self.number + 1


@login_required
@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The connections list: searched, filtered and ordered as the URL says, with what needs
    attention summed up above it. A constant number of queries at any size."""
    require_viewer(request.user)
    filters = ConnectionFilterForm(request.GET)
    connections = filters.filter(
        Connection.objects.select_related("client").prefetch_related("scopes")
    )
    page = UncountedPage.of(connections, request.GET.get("page"))
    kept = request.GET.copy()
    kept.pop("page", None)
    return render(
        request,
        "connections/connection_list.html",
        {
            "page": page,
            "filters": filters,
            "summary": attention_summary(),
            "page_query": kept.urlencode(),
            "can_edit": can_edit(request.user),
            "redirect_uri": settings.OAUTH_REDIRECT_URI,
            "has_clients": not page.object_list
            and page.number == 1
            and not filters.active
            and OAuthClient.objects.exists(),
        },
    )


@login_required
@require_safe
def client_list(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    clients = OAuthClient.objects.order_by("name")
    page = Paginator(clients, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "connections/client_list.html",
        {
            "page": page,
            "can_edit": can_edit(request.user),
            "warned": budgets.clients_with_warnings(),
            "redirect_uri": settings.OAUTH_REDIRECT_URI,
        },
    )


@login_required
def client_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    client = get_client_for_user(request.user, code)
    return _client_page(request, client)


def _client_page(
    request: HttpRequest, client: OAuthClient, limits: BudgetLimitsForm | None = None
) -> HttpResponse:
    editor = can_edit(request.user)
    if limits is None and editor:
        limits = BudgetLimitsForm(client)
    return render(
        request,
        "connections/client_detail.html",
        {
            "client": client,
            "lines": budgets.budget_lines(client),
            "can_edit": editor,
            "limits_form": limits,
            "connections": client.connections.order_by("name"),
        },
        status=400 if limits is not None and limits.errors else 200,
    )


@login_required
@require_POST
def client_limits(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """The client page's "Daily limits" form (editors and administrators)."""
    client = get_client_for_user(request.user, code, edit=True)
    form = BudgetLimitsForm(client, request.POST)
    if not form.is_valid():
        return _client_page(request, client, form)
    changed = form.save(request.user)
    if changed:
        messages.success(request, f"Daily limits saved: {', '.join(changed)}.")
    else:
        messages.info(request, "The daily limits were already as entered: nothing changed.")
    return redirect("client_detail", code=client.code)


# --- OAuth 2.0 clients ------------------------------------------------------------------------

# The "Create connection" panel keeps what was typed here while its user visits the client form
# without JavaScript; the client form sends them back with the new or edited client selected.
PANEL_SESSION_KEY = "connection_panel"
PANEL_FIELDS = ("name", "environment", "client", "banner")


def _panel_stash(request: HttpRequest) -> dict[str, Any] | None:
    stash = request.session.get(PANEL_SESSION_KEY)
    return stash if isinstance(stash, dict) else None


def _return_to_panel(request: HttpRequest, client: OAuthClient | None) -> HttpResponse | None:
    stash = _panel_stash(request)
    if request.GET.get("next") != "panel" or stash is None:
        return None
    if client is not None:
        stash["client"] = str(client.code)
        request.session[PANEL_SESSION_KEY] = stash
    return redirect(f"{stash['return_to']}?restore=1")


def _client_form_context(
    request: HttpRequest, form: OAuthClientForm, client: OAuthClient | None, dialog: bool
) -> dict[str, Any]:
    query = "?dialog=1" if dialog else ("?next=panel" if request.GET.get("next") == "panel" else "")
    stash = _panel_stash(request) if request.GET.get("next") == "panel" else None
    return {
        "form": form,
        "client": client,
        "dialog": dialog,
        "form_action": f"{request.path}{query}",
        "cancel_url": f"{stash['return_to']}?restore=1" if stash else reverse("client_list"),
        "redirect_uri": settings.OAUTH_REDIRECT_URI,
        "has_clients": OAuthClient.objects.exists(),
    }


def _client_json(client: OAuthClient, status: int = 200) -> JsonResponse:
    return JsonResponse(
        {
            "code": str(client.code),
            "name": client.name,
            "environment": client.environment,
            "grant_type": client.grant_type,
        },
        status=status,
    )


def _client_form_response(
    request: HttpRequest, form: OAuthClientForm, client: OAuthClient | None
) -> HttpResponse:
    dialog = request.GET.get("dialog") == "1"
    template = "connections/client_form_dialog.html" if dialog else "connections/client_form.html"
    return render(
        request,
        template,
        _client_form_context(request, form, client, dialog),
        status=400 if form.errors else 200,
    )


@login_required
@require_form_methods
def client_create(request: HttpRequest) -> HttpResponse:
    require_editor(request.user)
    form = OAuthClientForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        client = form.save(commit=False)
        client.created_by = request.user if request.user.is_authenticated else None
        client.save()
        changes.client_created(client, request.user)
        if request.GET.get("dialog") == "1":
            return _client_json(client, status=201)
        messages.success(request, f"OAuth 2.0 client “{client.name}” created.")
        return _return_to_panel(request, client) or redirect("client_list")
    return _client_form_response(request, form, None)


@login_required
@require_form_methods
@reauthenticate_first
def client_edit(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    client = get_client_for_user(request.user, code, edit=True)
    form = OAuthClientForm(request.POST if request.method == "POST" else None, instance=client)
    if request.method == "POST" and form.is_valid():
        changed = changed_labels(form)
        client = form.save()
        changes.client_changed(client, request.user, changed)
        if request.GET.get("dialog") == "1":
            return _client_json(client)
        messages.success(request, f"OAuth 2.0 client “{client.name}” saved.")
        return _return_to_panel(request, client) or redirect("client_list")
    return _client_form_response(request, form, client)


@login_required
@require_form_methods
@reauthenticate_first
def client_delete(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    client = get_client_for_user(request.user, code, edit=True)
    users = list(client.connections.order_by("name").values_list("name", flat=True))
    refusal = (
        f"The OAuth 2.0 client “{client.name}” cannot be deleted while connections use it: "
        + ", ".join(users)
        + ". Delete those connections or move them to another client first."
        if users
        else ""
    )
    if request.method == "POST":
        if refusal:
            messages.error(request, refusal)
            return redirect("client_list")
        try:
            changes.delete_client(client, request.user)
        except ProtectedError:  # a connection was added meanwhile
            messages.error(request, "This client is now used by a connection: it was kept.")
            return redirect("client_list")
        messages.success(request, f"OAuth 2.0 client “{client.name}” deleted.")
        return redirect("client_list")
    return render(
        request, "connections/client_confirm_delete.html", {"client": client, "refusal": refusal}
    )


# --- Authorization ---------------------------------------------------------------------------


def start_authorization(request: HttpRequest, connection: Connection) -> HttpResponse:
    """Send the user to Kroger's consent page for ``connection`` (already saved), or, for
    client credentials, fetch its token right away."""
    if connection.grant_type == GrantType.AUTHORIZATION_CODE and site_address.elsewhere_url(
        request
    ):
        messages.error(request, site_address.mismatch_message(request))
        return redirect("connection_detail", code=connection.code)
    try:
        consent_url = consent.begin(connection, request.user)
    except consent.AuthorizationFailed as failed:
        messages.error(request, failed.message)
        return redirect("connection_detail", code=connection.code)
    if consent_url is not None:
        return redirect(consent_url)
    messages.success(request, f"“{connection.name}” is Online.")
    return redirect("connection_detail", code=connection.code)


@login_required
@require_POST
def connection_authorize(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """ "Reauthorize": a new consent; the stored tokens stay until new ones arrive."""
    connection = get_connection_for_user(request.user, code, edit=True)
    return start_authorization(request, connection)


def _callback_headers(view: Any) -> Any:
    """The callback's URL and form hold a code and a state: keep them out of caches and
    Referer headers."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            response: HttpResponse = view(request)
        except (PermissionDenied, Http404):
            # E.g. the person who started the flow is no longer an editor: answer here, so
            # the error page keeps these headers too.
            response = _callback_error(
                request, 403, f"You may not authorize this connection. {consent.START_AGAIN}"
            )
        response.setdefault("Referrer-Policy", "no-referrer")
        response["Cache-Control"] = "no-store"
        return response

    return wrapper


def _callback_error(
    request: HttpRequest, status: int, message: str, connection: Connection | None = None
) -> HttpResponse:
    if connection is not None:
        try:
            connection = get_connection_for_user(request.user, connection.code)
        except (PermissionDenied, Http404):
            connection = None
    return render(
        request,
        "connections/oauth_error.html",
        {"message": message, "connection": connection},
        status=status,
    )


# What Kroger's redirect may carry (RFC 6749 section 4.1.2), passed on to oauth_complete.
CALLBACK_PARAMETERS = ("code", "state", "error", "error_description")


@_callback_headers
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """Where Kroger sends the browser back after its consent page (RFC 6749 section 4.1.2).

    It answers at once with a page that says the authorization is being finished and posts
    Kroger's answer to ``oauth_complete`` (by itself, or with "Continue" without
    JavaScript), so a slow token exchange shows progress. A GET changes nothing.

    Deliberately not @login_required: a redirect to the sign-in page would carry the code
    along in its URL.
    """
    if not request.user.is_authenticated:
        return _callback_error(request, 403, consent.NOT_SIGNED_IN)
    answer = {name: request.GET[name] for name in CALLBACK_PARAMETERS if name in request.GET}
    response = render(request, "connections/oauth_finishing.html", {"answer": answer})
    # The post must carry an Origin header for its CSRF check, which "no-referrer" would
    # blank; "strict-origin" sends the origin alone, never this URL's code and state.
    response["Referrer-Policy"] = "strict-origin"
    return response


@_callback_headers
@require_POST
def oauth_complete(request: HttpRequest) -> HttpResponse:
    """Check Kroger's answer, posted by the callback's page, and exchange its code.

    The attempt is claimed before the exchange, so a second post (a reload, a double
    submit) is refused and never reaches Kroger.
    """
    try:
        connection = consent.complete(request.POST, request.user)
    except consent.AuthorizationRefused as refused:
        return _callback_error(request, refused.status, refused.message, refused.connection)
    except consent.AuthorizationFailed as failed:
        messages.error(request, failed.message)
        return redirect("connection_detail", code=failed.connection.code)
    if connection.status != ConnectionStatus.ONLINE:
        # Kroger's answer held a refresh token and nothing else usable (see lifecycle).
        messages.warning(
            request, f"“{connection.name}” is authorized, but {connection.status_reason}"
        )
        return redirect("connection_detail", code=connection.code)
    messages.success(request, f"“{connection.name}” is authorized and Online.")
    return redirect("connection_detail", code=connection.code)


# --- Connections ------------------------------------------------------------------------------


def _stash_panel(request: HttpRequest, action: str) -> HttpResponse:
    """Keep the panel's input in the session and open the client form page (no JavaScript)."""
    data: dict[str, Any] = {name: request.POST.get(name, "") for name in PANEL_FIELDS}
    data["scopes"] = request.POST.getlist("scopes")
    request.session[PANEL_SESSION_KEY] = {"return_to": request.path, "data": data, "client": ""}
    if action == "edit_client":
        if not data["client"]:
            messages.error(request, "Choose an OAuth 2.0 client to edit.")
            return redirect(f"{request.path}?restore=1")
        client = get_client_for_user(request.user, data["client"], edit=True)
        return redirect(f"{reverse('client_edit', args=[client.code])}?next=panel")
    return redirect(f"{reverse('client_create')}?next=panel")


def _restored_panel(request: HttpRequest) -> dict[str, Any]:
    """What the panel held before its user went to the client form, with that client chosen."""
    stash = _panel_stash(request)
    if request.GET.get("restore") != "1" or stash is None or stash["return_to"] != request.path:
        return {}
    del request.session[PANEL_SESSION_KEY]
    initial: dict[str, Any] = {k: v for k, v in stash["data"].items() if v}
    if stash.get("client"):
        client = OAuthClient.objects.filter(code=stash["client"]).first()
        if client is not None:
            initial["client"] = str(client.code)
            initial["environment"] = client.environment
    return initial


def _connection_panel(request: HttpRequest, connection: Connection | None) -> HttpResponse:
    if request.method == "POST":
        action = request.POST.get("action", "save")
        if action in ("add_client", "edit_client"):
            return _stash_panel(request, action)
        form = ConnectionForm(request.POST, instance=connection)
        if form.is_valid():
            # After Save & authorize, the authorization's outcome is the one message shown.
            saved = _save_connection(request, form, connection, announce=action != "authorize")
            if action == "authorize":
                return start_authorization(request, saved)
            return redirect("connection_detail", code=saved.code)
    else:
        form = ConnectionForm(instance=connection, initial=_restored_panel(request))
    return render(
        request,
        "connections/connection_form.html",
        {
            "form": form,
            "connection": connection,
            "client_edit_url": reverse("client_edit", args=[uuid.UUID(int=0)]),
        },
        status=400 if form.errors else 200,
    )


def _save_connection(
    request: HttpRequest, form: ConnectionForm, before: Connection | None, *, announce: bool = True
) -> Connection:
    changed = changed_labels(form)
    had_tokens = before is not None and before.is_authorized
    if before is None:
        connection: Connection = form.save(commit=False)
        connection.created_by = request.user if request.user.is_authenticated else None
        connection.save()
        form.save_m2m()
        changes.connection_created(connection, request.user)
        if announce:
            messages.success(request, f"Connection “{connection.name}” created.")
        return connection
    # Only the edited columns: a full save would restore tokens a refresh rotated meanwhile.
    connection = form.save(commit=False)
    with transaction.atomic():
        discarded = changes.save_connection_edit(
            connection, request.user, form.changed_data, changed
        )
        form.save_m2m()
    if discarded:
        messages.warning(request, changes.TOKENS_DISCARDED)
    elif had_tokens and "scopes" in form.changed_data:
        messages.warning(
            request,
            "Scopes changed: reauthorize the connection for Kroger to grant them. Until then it "
            "keeps the scopes it was granted.",
        )
    if announce:
        messages.success(request, f"Connection “{connection.name}” saved.")
    return connection


@login_required
@require_form_methods
def connection_create(request: HttpRequest) -> HttpResponse:
    require_editor(request.user)
    return _connection_panel(request, None)


@login_required
@require_form_methods
def connection_edit(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    connection = get_connection_for_user(request.user, code, edit=True)
    return _connection_panel(request, connection)


def http_settings(connection: Connection) -> list[tuple[str, str]]:
    """What the simple settings amount to, in the terms of a generic OAuth 2.0 tool."""
    base = connection.base_url
    return [
        ("Base URI", base),
        ("Authorization URL", f"{base}connect/oauth2/authorize"),
        ("Token URL", f"{base}connect/oauth2/token"),
        ("Grant type", connection.client.get_grant_type_display()),
        ("Client authentication", "HTTP Basic"),
        ("Scope delimiter", "space"),
        ("Scopes requested", connection.scope_string()),
        ("PKCE method", "S256"),
        ("Redirect URI", settings.OAUTH_REDIRECT_URI),
    ]


@login_required
@require_safe
def connection_detail(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    connection = get_connection_for_user(request.user, code)
    return render(
        request,
        "connections/connection_detail.html",
        {
            "connection": connection,
            "scopes": connection.scopes.all(),
            "http_settings": http_settings(connection),
            "can_edit": can_edit(request.user),
            "history": connection.events.select_related("actor")[:HISTORY_SIZE],
        },
    )


@login_required
@require_form_methods
@reauthenticate_first
def connection_delete(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    connection = get_connection_for_user(request.user, code, edit=True)
    if request.method == "POST":
        name = connection.name
        changes.delete_connection(connection, request.user)
        messages.success(request, f"Connection “{name}” deleted.")
        return redirect("home")
    return render(request, "connections/connection_confirm_delete.html", {"connection": connection})


@login_required
@require_POST
def connection_test(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    """One real API call with the connection's token (each test spends Kroger's rate limit)."""
    connection = get_connection_for_user(request.user, code, edit=True)
    result = lifecycle.run_connection_test(connection, actor=Actor(request.user))
    report = messages.success if result.ok else messages.error
    report(request, f"Test connection ({result.endpoint}): {result.message}")
    return redirect("connection_detail", code=connection.code)


@login_required
@require_POST
def connection_refresh(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    connection = get_connection_for_user(request.user, code, edit=True)
    try:
        token = lifecycle.renew(connection, actor=Actor(request.user))
    except TokenUnavailable as exc:
        messages.error(request, f"The token was not refreshed: {exc.reason}")
    else:
        until = timezone.localtime(token.expires_at)
        message = f"Token refreshed: the access token is valid until {until:%Y-%m-%d %H:%M:%S %Z}."
        messages.success(request, message)
    return redirect("connection_detail", code=connection.code)


@login_required
@require_form_methods
@reauthenticate_first
def connection_disconnect(request: HttpRequest, code: uuid.UUID) -> HttpResponse:
    connection = get_connection_for_user(request.user, code, edit=True)
    if request.method == "POST":
        lifecycle.disconnect(connection, actor=Actor(request.user))
        messages.success(request, f"“{connection.name}” is disconnected: its tokens are forgotten.")
        return redirect("connection_detail", code=connection.code)
    return render(request, "connections/connection_disconnect.html", {"connection": connection})


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 400 page, rendered without the request: its Host header may be what was refused,
    and the navigation would read it."""
    return HttpResponseBadRequest(render_to_string("400.html"))


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """The 403 page: what was refused, the role it needs, and whom to ask for it."""
    user = request.user
    administrators: list[str] = []
    if user.is_authenticated:
        administrators = list(
            get_user_model()
            .objects.filter(is_superuser=True, is_active=True)
            .exclude(email="")
            .order_by("email")
            .values_list("email", flat=True)[:5]
        )
    context = {
        "message": str(exception) if exception and str(exception) else "",
        "role": getattr(exception, "role", ""),
        "current_role": role_of(user) if user.is_authenticated else "",
        "administrators": administrators,
    }
    return render(request, "403.html", context, status=403)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and container health checks: is the database reachable, and can
    ENCRYPTION_KEYS read the secrets stored in it?

    Unreadable secrets answer 200 with "degraded" and the one line saying what to do: the
    portal must stay up, as it is where people enter the secrets again.
    """
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        unreadable = unreadable_secrets()
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    if unreadable:
        return JsonResponse({"status": "degraded", "database": "ok", "encryption_keys": unreadable})
    return JsonResponse({"status": "ok", "database": "ok", "encryption_keys": "ok"})
