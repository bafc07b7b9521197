from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def sign_in(request: HttpRequest) -> dict[str, Any]:
    """What the sign-in pages need to know: the team SSO button and whether passwords work."""
    return {
        "sso_name": settings.SSO_OIDC_NAME if settings.SOCIALACCOUNT_PROVIDERS else "",
        "sso_redirect_uri": settings.SSO_OIDC_REDIRECT_URI,
        "password_sign_in": settings.PASSWORD_SIGN_IN,
        "break_glass_sign_in": settings.BREAK_GLASS_PASSWORD_SIGN_IN,
        "passkey_sign_in": settings.MFA_PASSKEY_LOGIN_ENABLED,
    }
