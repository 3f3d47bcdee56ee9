"""Search indexes that PostgreSQL can actually use.

Django compiles ``icontains`` to ``UPPER(col) LIKE UPPER('%q%')``, so the
trigram indexes of 0002 (on the bare columns) were never chosen; these index
``UPPER(col)`` instead. PostgreSQL only; nothing on SQLite.
"""

from django.db import migrations


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS resource_name_trgm")
    schema_editor.execute("DROP INDEX IF EXISTS resource_description_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS resource_name_upper_trgm ON registry_resource "
        "USING gin (UPPER(name) gin_trgm_ops)"
    )
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS resource_description_upper_trgm ON registry_resource "
        "USING gin (UPPER(description) gin_trgm_ops)"
    )


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS resource_name_upper_trgm")
    schema_editor.execute("DROP INDEX IF EXISTS resource_description_upper_trgm")


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_apitoken_cluster")]
    operations = [migrations.RunPython(forwards, backwards)]
