from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path

from connections_app import (
    account_views,
    accounts,
    api,
    api_docs,
    audit_log,
    metrics,
    service_keys,
    views,
    webhook_views,
)

handler400 = views.bad_request
handler403 = views.permission_denied

urlpatterns = [
    path("", views.home, name="home"),
    path("clients/", views.client_list, name="client_list"),
    path("clients/new/", views.client_create, name="client_create"),
    path("clients/<uuid:code>/", views.client_detail, name="client_detail"),
    path("clients/<uuid:code>/edit/", views.client_edit, name="client_edit"),
    path("clients/<uuid:code>/limits/", views.client_limits, name="client_limits"),
    path("clients/<uuid:code>/delete/", views.client_delete, name="client_delete"),
    path("connections/new/", views.connection_create, name="connection_create"),
    path("connections/<uuid:code>/", views.connection_detail, name="connection_detail"),
    path("connections/<uuid:code>/edit/", views.connection_edit, name="connection_edit"),
    path("connections/<uuid:code>/delete/", views.connection_delete, name="connection_delete"),
    path(
        "connections/<uuid:code>/authorize/",
        views.connection_authorize,
        name="connection_authorize",
    ),
    path("connections/<uuid:code>/test/", views.connection_test, name="connection_test"),
    path("connections/<uuid:code>/refresh/", views.connection_refresh, name="connection_refresh"),
    path(
        "connections/<uuid:code>/disconnect/",
        views.connection_disconnect,
        name="connection_disconnect",
    ),
    path("oauth/callback/", views.oauth_callback, name="oauth_callback"),
    path("oauth/complete/", views.oauth_complete, name="oauth_complete"),
    path("healthz", views.healthz, name="healthz"),
    path("api/v1/connections/", api.connection_list, name="api_connection_list"),
    path("api/v1/connections/<str:code>/token", api.connection_token, name="api_connection_token"),
    re_path(
        r"^api/v1/connections/(?P<code>[^/]+)/kroger/(?P<path>[\s\S]*)$",
        api.connection_proxy,
        name="api_connection_proxy",
    ),
    path("api/v1/openapi.json", api.openapi, name="api_openapi"),
    path("service-api/", api_docs.api_docs, name="api_docs"),
    path("service-keys/", service_keys.service_key_list, name="service_key_list"),
    path("service-keys/new/", service_keys.service_key_create, name="service_key_create"),
    path(
        "service-keys/<uuid:code>/revoke/",
        service_keys.service_key_revoke,
        name="service_key_revoke",
    ),
    path("webhooks/", webhook_views.webhook_list, name="webhook_list"),
    path("webhooks/new/", webhook_views.webhook_create, name="webhook_create"),
    path("webhooks/<uuid:code>/", webhook_views.webhook_detail, name="webhook_detail"),
    path("webhooks/<uuid:code>/edit/", webhook_views.webhook_edit, name="webhook_edit"),
    path(
        "webhooks/<uuid:code>/roll-secret/",
        webhook_views.webhook_roll_secret,
        name="webhook_roll_secret",
    ),
    path("webhooks/<uuid:code>/test/", webhook_views.webhook_test, name="webhook_test"),
    path("webhooks/<uuid:code>/delete/", webhook_views.webhook_delete, name="webhook_delete"),
    path("metrics", metrics.metrics, name="metrics"),
    re_path(r"^accounts/password/reset/", account_views.password_reset),
    path("accounts/signup/", accounts.signup, name="account_signup"),
    path(
        "accounts/reauthenticate/sso/",
        account_views.reauthenticate_with_sso,
        name="reauthenticate_sso",
    ),
    path("accounts/2fa/required/", account_views.mfa_setup_required, name="mfa_setup_required"),
    path("audit/", audit_log.audit_log, name="audit_log"),
    path("audit/export.csv", audit_log.audit_log_csv, name="audit_log_csv"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
]
