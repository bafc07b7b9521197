from __future__ import annotations

from django.apps import AppConfig


class ConnectionsAppConfig(AppConfig):
    name = "connections_app"
    verbose_name = "Kroger connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from connections_app.key_ring_check import check_key_ring

        checks.register(check_key_ring)

        # Signal receivers: MFA secrets bound to their rows, sign-in events in the audit log.
        from connections_app import audit, mfa  # noqa: F401
