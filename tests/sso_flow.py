"""Walk the team SSO flow without a browser: the portal through Django's test client, the
identity provider through ``requests`` (its real pages, over https)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from tests.fakes.fake_idp import PASSWORD, FakeIdentityProvider


def _form_fields(html: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]*)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        if name and 'type="submit"' not in tag:
            fields[name.group(1)] = unescape(value.group(1)) if value else ""
    return fields


def sign_in_through(client: Any, idp: FakeIdentityProvider, username: str) -> Any:
    """Press "Sign in with …", sign in and consent at the identity provider, and return the
    portal's answer to the callback (followed to its end)."""
    start = client.post("/accounts/oidc/sso/login/", {"process": "login"})
    assert start.status_code == 302, start.content
    return through_identity_provider(client, start["Location"], username)


def through_identity_provider(
    client: Any, authorize_url: str, username: str, at_idp: requests.Session | None = None
) -> Any:
    """Follow the portal's redirect to the identity provider: sign in there (when it asks),
    consent, and return the portal's answer to the callback (followed to its end). An
    ``at_idp`` session that signed in before keeps its sign-in at the identity provider."""
    at_idp = at_idp or requests.Session()
    page = at_idp.get(authorize_url, timeout=10)
    if "/login/" in page.url:
        fields = _form_fields(page.text)
        fields.update(username=username, password=PASSWORD)
        page = at_idp.post(page.url, data=fields, headers={"Referer": page.url}, timeout=10)
    fields = _form_fields(page.text)
    fields["allow"] = "Authorize"
    consent = at_idp.post(
        page.url, data=fields, headers={"Referer": page.url}, allow_redirects=False, timeout=10
    )
    assert consent.status_code == 302, consent.text
    callback = urlsplit(consent.headers["Location"])
    query = {key: values[0] for key, values in parse_qs(callback.query).items()}
    return client.get(callback.path, query, follow=True)
