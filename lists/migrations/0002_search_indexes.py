"""
Postgres-only search indexes (the embedded SQLite database goes without):
trigram GIN indexes serve the dashboard's and API's substring search on email
and name (ILIKE '%q%'); a jsonb_path_ops GIN index serves attribute
containment filters in segments (attributes @> '{"plan": "pro"}').
"""

from django.db import migrations

FORWARD = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    "CREATE INDEX IF NOT EXISTS subscriber_email_trgm ON lists_subscriber USING gin (email gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS subscriber_name_trgm ON lists_subscriber USING gin (name gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS subscriber_attributes_gin ON lists_subscriber USING gin (attributes jsonb_path_ops)",
]
BACKWARD = [
    "DROP INDEX IF EXISTS subscriber_attributes_gin",
    "DROP INDEX IF EXISTS subscriber_name_trgm",
    "DROP INDEX IF EXISTS subscriber_email_trgm",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("lists", "0001_initial")]
    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
