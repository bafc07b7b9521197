from __future__ import annotations

from django.apps import AppConfig


class ConnectionsAppConfig(AppConfig):
    name = "connections_app"
    verbose_name = "Kroger connections"
    default_auto_field = "django.db.models.BigAutoField"
