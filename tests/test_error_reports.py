"""Error reports (what ADMINS are mailed, what a logged 500 carries) hide OAuth secrets."""

from __future__ import annotations

import secrets
import sys
from typing import cast

from django.http import HttpRequest
from django.test import RequestFactory
from django.views.debug import ExceptionReporter, get_exception_reporter_class

# Made at run time: the report quotes source lines, which must not contain the values.
CODE = secrets.token_urlsafe(16)
STATE = secrets.token_urlsafe(16)


def _reporter(request: HttpRequest) -> ExceptionReporter:
    """The reporter Django would use for the exception being handled."""
    reporter_class = cast(type[ExceptionReporter], get_exception_reporter_class(request))
    return reporter_class(request, *sys.exc_info())


def _report(request: HttpRequest) -> tuple[str, str]:
    try:
        raise RuntimeError("the callback failed")
    except RuntimeError:
        reporter = _reporter(request)
        return reporter.get_traceback_text(), reporter.get_traceback_html()


def _callback_request() -> HttpRequest:
    return RequestFactory().get(
        "/oauth/callback/", {"code": CODE, "state": STATE, "scope": "product.compact"}
    )


def test_it_hides_the_code_and_state_from_the_error_report() -> None:
    text, html = _report(_callback_request())

    for report in (text, html):
        assert CODE not in report
        assert STATE not in report
        assert "/oauth/callback/" in report
    assert "product.compact" in text  # other parameters still help debugging


def test_it_hides_the_query_string_of_a_request_among_the_frame_variables() -> None:
    request = _callback_request()

    def view(request: HttpRequest) -> None:
        query = request.GET
        raise RuntimeError(f"failed with {len(query)} parameters")

    try:
        view(request)
    except RuntimeError:
        reporter = _reporter(request)
        text, html = reporter.get_traceback_text(), reporter.get_traceback_html()

    for report in (text, html):
        assert CODE not in report
        assert STATE not in report
