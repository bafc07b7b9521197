"""The portal's own address, SITE_URL, and browsers that reached it by another name.

Kroger sends the shopper back to SITE_URL's /oauth/callback/. A browser signed in at another
address (``localhost`` when SITE_URL says ``127.0.0.1``) has no session cookie there, so the
return would find nobody signed in and the consent would be lost: such a browser is told, on
every page, to continue at SITE_URL, and no authorization starts from it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

DEFAULT_PORTS = {"http": 80, "https": 443}


def _host_and_port(netloc: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(f"//{netloc}")
    try:
        port = parts.port
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port or default_port


def elsewhere_url(request: HttpRequest) -> str:
    """This page's URL at SITE_URL when the browser came by another host name or port, else "".

    The scheme is not compared: cookies do not depend on it, and behind a TLS proxy without
    SECURE_PROXY_SSL_HEADER every request would look like plain http.
    """
    site = urlsplit(settings.SITE_URL)
    default_port = DEFAULT_PORTS.get(site.scheme, 0)
    here = _host_and_port(request.get_host(), default_port)
    if here == _host_and_port(site.netloc, default_port):
        return ""
    return f"{settings.SITE_URL}{request.get_full_path()}"


def mismatch_message(request: HttpRequest) -> str:
    return (
        f"You are using the portal at {request.get_host()}, but its address is "
        f"{settings.SITE_URL} (SITE_URL): Kroger sends you back there after its consent page, "
        "where this browser is not signed in, so the authorization would be lost. Continue at "
        f"{settings.SITE_URL} and authorize from there."
    )


def site_address(request: HttpRequest) -> dict[str, Any]:
    """Template context: ``site_address_url`` is set when the browser is at another address."""
    return {"site_address_url": elsewhere_url(request), "site_url": settings.SITE_URL}
