"""The 400, 404, 405, 500 and CSRF pages: styled, saying what happened and where to go, and
nothing more (no exception text, no traceback)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path

from connections_app import urls as portal_urls
from connections_app.models import Connection

pytestmark = pytest.mark.django_db

STYLESHEET = '<link rel="stylesheet" href="/static/css/app.css">'
BACK = 'href="/">Back to connections</a>'


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret-looking detail 7f3a")


# This module is also the URLconf of the 500 test: the portal's pages and one that fails.
urlpatterns = [path("boom/", boom), *portal_urls.urlpatterns]


def text(response: Any) -> str:
    return " ".join(response.content.decode().split())


def test_a_missing_page_says_so_and_leads_back(client: Any, owner: Any) -> None:
    client.force_login(owner)
    response = client.get(f"/connections/{uuid.uuid4()}/")

    assert response.status_code == 404
    page = text(response)
    assert "<title>Page not found · Kroger connections</title>" in page
    assert "There is nothing at this address" in page
    assert "not be shared with you" in page
    assert STYLESHEET in page and BACK in page
    assert 'aria-label="Main"' in page  # the navigation, for a signed-in person
    assert "matches the given query" not in page  # Django's exception text stays out


def test_an_object_of_someone_elses_is_the_same_404(
    client: Any, outsider: Any, connection: Connection
) -> None:
    client.force_login(outsider)
    missing = text(client.get(f"/connections/{uuid.uuid4()}/"))
    response = client.get(f"/connections/{connection.code}/")
    assert response.status_code in (403, 404)
    assert connection.name not in text(response)
    assert "There is nothing at this address" in missing


def test_a_method_a_page_does_not_take_is_a_page_naming_the_allowed_ones(
    client: Any, owner: Any
) -> None:
    client.force_login(owner)
    response = client.put("/connections/new/")

    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"
    page = text(response)
    assert "<title>Not allowed here · Kroger connections</title>" in page
    assert "It was sent as <code>PUT</code>" in page
    assert "(it accepts GET, HEAD, POST)" in page
    assert STYLESHEET in page and BACK in page
    assert "Content-Security-Policy" in response.headers  # the headers of every page


def test_a_405_of_the_api_stays_for_programs(client: Any) -> None:
    response = client.put("/api/v1/openapi.json")
    assert response.status_code == 405
    assert b"<html" not in response.content


def test_a_nul_in_the_address_is_a_styled_400(client: Any) -> None:
    response = client.get("/clients/?q=a%00b")

    assert response.status_code == 400
    page = text(response)
    assert "The portal could not read this request" in page
    assert "NUL character (%00)" in page
    assert STYLESHEET in page and BACK in page


def test_an_unknown_host_is_a_styled_400() -> None:
    visitor = Client(HTTP_HOST="elsewhere.example", raise_request_exception=False)
    response = visitor.get("/")

    assert response.status_code == 400
    page = text(response)
    assert "The portal could not read this request" in page
    assert "elsewhere.example" not in page
    assert STYLESHEET in page


@pytest.mark.urls("tests.test_error_pages")
def test_a_failure_is_a_500_page_without_its_details(client: Any, owner: Any) -> None:
    client.raise_request_exception = False
    client.force_login(owner)

    response = client.get("/boom/")

    assert response.status_code == 500
    page = text(response)
    assert "Something went wrong in the portal" in page
    assert "tell an administrator" in page
    assert STYLESHEET in page and BACK in page
    assert "7f3a" not in page and "RuntimeError" not in page and "Traceback" not in page


def test_a_form_without_its_csrf_token_is_a_styled_403(owner: Any) -> None:
    browser = Client(enforce_csrf_checks=True, HTTP_HOST="portal.test")
    browser.force_login(owner)

    response = browser.post("/connections/new/", {"name": "Cart"})

    assert response.status_code == 403
    page = text(response)
    assert "This form could not be accepted" in page
    assert "reload the page and send the form again" in page
    assert STYLESHEET in page and BACK in page
    assert "CSRF cookie" not in page  # Django's reason is for the log


def test_too_many_sign_ins_from_one_address_is_a_page_saying_to_wait(owner: Any) -> None:
    # allauth allows 30 sign-in attempts a minute from one address; the 31st is refused.
    for _ in range(30):
        Client().post("/accounts/login/", {"login": owner.email, "password": "wrong"})
    response = Client().post("/accounts/login/", {"login": owner.email, "password": "wrong"})

    assert response.status_code == 429
    page = text(response)
    assert "<title>Too many attempts · Kroger connections</title>" in page
    assert "Wait a minute, then try again" in page
    assert STYLESHEET in page
