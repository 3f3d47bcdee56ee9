"""Trigram indexes so that text search (``q=``) stays fast over many resources.

PostgreSQL only; on SQLite (the embedded default) this does nothing. pg_trgm
is a trusted extension, so a database owner may create it.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS resource_name_trgm ON registry_resource "
        "USING gin (name gin_trgm_ops)"
    )
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS resource_description_trgm ON registry_resource "
        "USING gin (description gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS resource_name_trgm")
    schema_editor.execute("DROP INDEX IF EXISTS resource_description_trgm")


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
