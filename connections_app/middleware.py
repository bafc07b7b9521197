"""Request checks that hold for every page and the API, before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from connections_app.crypto import DecryptionError

NUL = "\x00"
NUL_MESSAGE = "The request holds a NUL character (%00), which no address or form here accepts."


def _holds_nul(request: HttpRequest) -> bool:
    if NUL in request.path:
        return True
    data = [request.GET]
    if request.method == "POST" and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        data.append(request.POST)
    return any(
        NUL in key or any(NUL in value for value in values)
        for query in data
        for key, values in query.lists()
    )


def refuse_nul_bytes(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[..., HttpResponse]:
    """400 for a NUL byte anywhere in the path, query or form.

    PostgreSQL cannot store or even compare a text value holding one, so without this check
    a NUL in a search box, an admin filter or Kroger's callback parameters would be a 500.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if _holds_nul(request):
            if request.path.startswith("/api/"):
                code = "invalid_path" if NUL in request.path else "bad_request"
                response: HttpResponse = JsonResponse(
                    {"error": {"code": code, "message": NUL_MESSAGE}}, status=400
                )
                response["Cache-Control"] = "no-store"
                return response
            # Before sessions: the page is rendered without the person's navigation.
            return HttpResponseBadRequest(render_to_string("400.html", {"message": NUL_MESSAGE}))
        return get_response(request)

    return middleware


# Answered to programs, which read the status and the Allow header, not a page.
MACHINE_URL_NAMES = frozenset({"metrics", "healthz"})


def method_not_allowed_page(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[..., HttpResponse]:
    """A page's 405 (Django's is empty) says what happened and where to go, keeping Allow.

    Last in MIDDLEWARE, so the page still gets the security headers of those before it.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if response.status_code != 405 or response.content or _for_programs(request):
            return response
        allowed = [method.strip() for method in response.get("Allow", "").split(",")]
        page = render(
            request,
            "405.html",
            {"method": request.method, "allowed": ", ".join(m for m in allowed if m)},
            status=405,
        )
        page["Allow"] = response.get("Allow", "")
        return page

    return middleware


def _for_programs(request: HttpRequest) -> bool:
    match = request.resolver_match
    return request.path.startswith("/api/") or (
        match is not None and match.url_name in MACHINE_URL_NAMES
    )


UNREADABLE_MESSAGE = (
    "A stored secret this needs cannot be decrypted with ENCRYPTION_KEYS: the keys are not the "
    "ones it was encrypted with. Restore them, or enter the secret again (README: Encryption keys)."
)


class UnreadableSecretMiddleware:
    """What is left of a DecryptionError (a secret that the configured keys cannot decrypt)
    after the pages, forms and token paths have handled theirs: a page that says so, or JSON
    for the API, rather than a bare 500."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not isinstance(exception, DecryptionError):
            return None
        if request.path.startswith("/api/"):
            response: HttpResponse = JsonResponse(
                {"error": {"code": "secrets_unreadable", "message": UNREADABLE_MESSAGE}},
                status=503,
            )
            response["Cache-Control"] = "no-store"
            return response
        return render(
            request,
            "connections/secrets_unreadable.html",
            {"message": UNREADABLE_MESSAGE},
            status=503,
        )


# What the JSON API needs of the middleware: HTTPS rules (HSTS, nosniff, SSL redirect), the
# NUL check, the Host check (CommonMiddleware asks for the host, which validates it against
# ALLOWED_HOSTS) and the JSON answer for unreadable secrets. Not sessions, CSRF, sign-in,
# messages, CSP, allauth or the second-factor rule: the API authenticates by service key
# and reads no cookies.
API_MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "connections_app.middleware.refuse_nul_bytes",
    "django.middleware.common.CommonMiddleware",
    "connections_app.middleware.UnreadableSecretMiddleware",
]
API_PREFIX = "/api/"


class _ApiHandler(BaseHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        pages = settings.MIDDLEWARE
        settings.MIDDLEWARE = API_MIDDLEWARE  # once, while the process starts
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = pages


class ApiMiddlewareOnly:
    """First in MIDDLEWARE: requests under /api/ run API_MIDDLEWARE and their view, and
    skip the pages' middleware, whose session, sign-in and CSP work cost the API about a
    third of its time (bench/proxy.py). Every other request goes on through MIDDLEWARE as
    before."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.api = _ApiHandler()
        self.api.load_middleware()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            return self.api.get_response(request)  # type: ignore[return-value]
        return self.get_response(request)
