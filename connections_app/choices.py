"""The fixed choices of a client's grant type and a connection's status.

Apart from ``models`` so that the renewal policy can read them without importing the models
(``models`` computes each connection's renewal due time with that policy).
"""

from __future__ import annotations

from django.db import models


class GrantType(models.TextChoices):
    AUTHORIZATION_CODE = "authorization_code", "Authorization code"
    CLIENT_CREDENTIALS = "client_credentials", "Client credentials"


class ConnectionStatus(models.TextChoices):
    NOT_AUTHORIZED = "not_authorized", "Not authorized"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
