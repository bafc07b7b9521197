"""Pages about people and their sign-ins, next to allauth's own."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import resolve

from connections_app.mfa import must_have_mfa


def password_reset(request: HttpRequest) -> HttpResponse:
    """allauth's password reset pages, which are gone when only SSO signs people in."""
    if not settings.PASSWORD_SIGN_IN:
        raise Http404("Password reset is off: sign in through team SSO.")
    match = resolve(request.path_info.removeprefix("/accounts"), "allauth.urls")
    response: HttpResponse = match.func(request, *match.args, **match.kwargs)
    return response


@login_required
def mfa_setup_required(request: HttpRequest) -> HttpResponse:
    """Where someone who must have a second factor and has none is sent, and anyone may start."""
    return render(request, "mfa/setup_required.html", {"required": must_have_mfa(request.user)})
