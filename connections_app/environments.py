"""Kroger's two environments, and the rule every Kroger or portal address must follow.

This module reads settings only when asked for a base URL, so ``settings.py`` can use its
address rule while it is being loaded.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (as urlsplit parsed it) is this machine: by address, never by prefix
    (``127.attacker.example`` is somebody else's)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def url_allowed(url: str, *, loopback_http: bool) -> bool:
    """An address with a host, over https; plain http only for a loopback host when
    ``loopback_http`` (the portal itself, served on this machine in development)."""
    parts = urlsplit(url)
    allowed = {"https"} | ({"http"} if loopback_http and is_loopback(parts.hostname) else set())
    return bool(parts.hostname) and parts.scheme in allowed


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    CERTIFICATION = "certification", "Certification"

    @property
    def base_url(self) -> str:
        """The configured API base URL, ending in '/'."""
        url = str(settings.KROGER_BASE_URLS[self.value])
        return url if url.endswith("/") else url + "/"

    @classmethod
    def label_of(cls, value: str) -> str:
        """The label people read for a stored value (the value itself if it is unknown)."""
        return cls(value).label if value in cls.values else value
