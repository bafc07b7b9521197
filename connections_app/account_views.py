"""Pages about people and their sign-ins, next to allauth's own."""

from __future__ import annotations

from typing import Any

from allauth.account.views._reauthenticate import BaseReauthenticateView
from allauth.socialaccount.adapter import get_adapter as get_socialaccount_adapter
from allauth.socialaccount.providers.base import AuthProcess
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import resolve
from django.utils.decorators import method_decorator
from requests import RequestException

from connections_app.accounts import REAUTHENTICATE_STATE_KEY, SSO_PROVIDER_ID, has_sso_account
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


@method_decorator(login_required, name="dispatch")
class ReauthenticateWithSSOView(BaseReauthenticateView):  # type: ignore[misc]
    """allauth's "confirm it is you" by signing in again at the team's identity provider
    (``prompt=login``; its answer is checked in ``accounts.confirm_reauthentication``). For
    someone with no way to confirm at all, the page says what to do instead."""

    reauthentication_method = "socialaccount"
    form_class = forms.Form
    template_name = "account/reauthenticate_sso.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context: dict[str, Any] = super().get_context_data(**kwargs)
        context["sso_name"] = settings.SSO_OIDC_NAME
        context["via_sso"] = has_sso_account(self.request.user)
        return context

    def form_valid(self, form: forms.Form) -> HttpResponse:
        if not has_sso_account(self.request.user):
            return self.form_invalid(form)
        provider = get_socialaccount_adapter().get_provider(self.request, SSO_PROVIDER_ID)
        try:
            response: HttpResponse = provider.redirect(
                self.request,
                AuthProcess.REDIRECT,
                next_url=self.get_next_url(),
                auth_params={"prompt": "login", "max_age": "0"},
                **{REAUTHENTICATE_STATE_KEY: True},
            )
        except RequestException:
            form.add_error(
                None, f"{settings.SSO_OIDC_NAME} could not be reached. Try again in a moment."
            )
            return self.form_invalid(form)
        return response


reauthenticate_with_sso = ReauthenticateWithSSOView.as_view()
