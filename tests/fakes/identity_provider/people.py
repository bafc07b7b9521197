"""The people the identity provider knows (``people.json``) and the claims it issues."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import BaseBackend
from django.contrib.auth.models import User
from django.http import HttpRequest
from oauth2_provider.oauth2_validators import OAuth2Validator


def people() -> dict[str, dict[str, Any]]:
    path = Path(getattr(settings, "STATE_DIR")) / "people.json"  # noqa: B009 (not the portal's settings)
    return json.loads(path.read_text()) if path.exists() else {}


class PeopleBackend(BaseBackend):
    def authenticate(
        self, request: HttpRequest | None, username: str = "", password: str = "", **kw: Any
    ) -> User | None:
        person = people().get(username)
        if person is None or person["password"] != password:
            return None
        user, _ = User.objects.get_or_create(username=username)
        return user

    def get_user(self, user_id: int) -> User | None:
        return User.objects.filter(pk=user_id).first()


class ClaimsValidator(OAuth2Validator):
    oidc_claim_scope = {
        **OAuth2Validator.oidc_claim_scope,
        "groups": "profile",
        "amr": "openid",
    }

    def get_additional_claims(self, request: Any) -> dict[str, Any]:
        person = people()[request.user.username]
        return {
            "email": person["email"],
            "email_verified": person.get("email_verified", True),
            "name": person.get("name", request.user.username),
            "preferred_username": request.user.username,
            "groups": person.get("groups", []),
            "amr": person.get("amr", ["pwd"]),
        }

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: Any) -> Any:
        claims, expiration_time = super().get_id_token_dictionary(token, token_handler, request)
        # A person may stand for an identity provider that does not ask again when told to
        # (prompt=login) and reports an earlier sign-in.
        signed_in_at = people()[request.user.username].get("signed_in_at")
        if signed_in_at is not None:
            claims["auth_time"] = signed_in_at
        return claims, expiration_time
