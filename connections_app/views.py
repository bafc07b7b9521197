from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db import DatabaseError
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from connections_app.access import can_edit, require_viewer
from connections_app.models import Connection, OAuthClient

PAGE_SIZE = 25


@login_required
def home(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    connections = (
        Connection.objects.select_related("client").prefetch_related("scopes").order_by("name")
    )
    page = Paginator(connections, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "connections/connection_list.html",
        {"page": page, "can_edit": can_edit(request.user)},
    )


@login_required
def client_list(request: HttpRequest) -> HttpResponse:
    require_viewer(request.user)
    clients = OAuthClient.objects.order_by("name")
    page = Paginator(clients, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "connections/client_list.html",
        {"page": page, "can_edit": can_edit(request.user)},
    )


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """For load balancers and container health checks: is the database reachable?"""
    try:
        with db_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return JsonResponse({"status": "error", "database": "unreachable"}, status=503)
    return JsonResponse({"status": "ok", "database": "ok"})
