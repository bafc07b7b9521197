"""Seed Kroger's public scope catalogue and the Viewers / Editors roles."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PUBLIC_SCOPES = [
    ("product.compact", "Read product data", True),
    ("cart.basic:write", "Add items to the shopper's cart", False),
    ("profile.compact", "Read the shopper's profile ID", False),
]

VIEW = ["view_connection", "view_oauthclient", "view_scope"]
EDIT = VIEW + [
    "add_connection",
    "change_connection",
    "delete_connection",
    "add_oauthclient",
    "change_oauthclient",
    "delete_oauthclient",
]


def seed(apps, schema_editor):
    Scope = apps.get_model("connections_app", "Scope")
    for name, description, allows_cc in PUBLIC_SCOPES:
        Scope.objects.get_or_create(
            name=name,
            defaults={"description": description, "allows_client_credentials": allows_cc},
        )

    # Permissions are normally created after all migrations; the roles need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for group_name, codenames in (("Viewers", VIEW), ("Editors", EDIT)):
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.set(
            Permission.objects.filter(
                content_type__app_label="connections_app", codename__in=codenames
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("connections_app", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
