# Patient search is `identifier__icontains` or `name__icontains`, which PostgreSQL runs as
# UPPER(column::text) LIKE UPPER('%term%'): a GIN trigram index on that very expression answers it without
# reading every patient. PostgreSQL only: elsewhere (the SQLite default) the search scans, as before.

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations

SEARCHED_COLUMNS = ("identifier", "name")


class TrigramExtensionOnPostgres(TrigramExtension):
    """TrigramExtension skips other databases when applied but not when reversed (it would look for
    pg_extension in SQLite)."""

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)


def _index_name(column: str) -> str:
    return f"diagnosis_patient_{column}_trgm"


def create_trigram_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED_COLUMNS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {_index_name(column)} ON diagnosis_patient "
            f"USING gin ((UPPER({column}::text)) gin_trgm_ops)"
        )


def drop_trigram_indexes(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    for column in SEARCHED_COLUMNS:
        schema_editor.execute(f"DROP INDEX IF EXISTS {_index_name(column)}")


class Migration(migrations.Migration):
    dependencies = [
        ("diagnosis", "0013_list_indexes"),
    ]

    operations = [
        TrigramExtensionOnPostgres(),
        migrations.RunPython(create_trigram_indexes, drop_trigram_indexes, elidable=False),
    ]
