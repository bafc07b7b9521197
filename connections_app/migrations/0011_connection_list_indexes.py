"""The connections list at any size: a partial index for its "needs attention" summary, and on
PostgreSQL a trigram index so that its search by name (``UPPER(name) LIKE UPPER('%…%')``,
what ``icontains`` sends) is an index scan. pg_trgm ships with PostgreSQL and is a trusted
extension (the database owner may create it); where it cannot be created, the search still
works, reading every name."""

import logging

from django.db import DatabaseError, migrations, models, transaction

logger = logging.getLogger(__name__)

TRIGRAM_INDEX = "connection_name_trigram"


def add_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
            schema_editor.execute(
                f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON connections_app_connection "
                "USING gin (UPPER(name::text) gin_trgm_ops)"
            )
    except DatabaseError as exc:
        logger.warning(
            "No trigram index for the connections search (pg_trgm unavailable: %s); "
            "searching by name reads every connection.",
            type(exc).__name__,
        )


def drop_trigram_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):
    dependencies = [
        ("connections_app", "0010_connection_attention"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="connection",
            index=models.Index(
                condition=models.Q(("attention__lt", 3)),
                fields=["attention"],
                name="connection_needs_attention",
            ),
        ),
        migrations.RunPython(add_trigram_index, drop_trigram_index),
    ]
