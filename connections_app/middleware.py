"""Request checks that hold for every page and the API, before any view runs."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse

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
                response: HttpResponse = JsonResponse(
                    {"error": {"code": "bad_request", "message": NUL_MESSAGE}}, status=400
                )
                response["Cache-Control"] = "no-store"
                return response
            return HttpResponseBadRequest(NUL_MESSAGE, content_type="text/plain; charset=utf-8")
        return get_response(request)

    return middleware
