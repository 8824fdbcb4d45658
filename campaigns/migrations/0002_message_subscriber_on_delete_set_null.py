"""The ledger survives a subscriber's deletion in the database too, not only through the ORM:
a DELETE issued by SQL (a bulk erase, a psql session) sets the message's subscriber to NULL."""

from django.db import migrations

FORWARD = """
DO $$
DECLARE name text;
BEGIN
  SELECT conname INTO name FROM pg_constraint
   WHERE conrelid = 'campaigns_message'::regclass AND contype = 'f'
     AND conkey = ARRAY[(SELECT attnum FROM pg_attribute
                          WHERE attrelid = 'campaigns_message'::regclass AND attname = 'subscriber_id')];
  EXECUTE format('ALTER TABLE campaigns_message DROP CONSTRAINT %I', name);
  EXECUTE format('ALTER TABLE campaigns_message ADD CONSTRAINT %I FOREIGN KEY (subscriber_id)
                  REFERENCES lists_subscriber (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED', name);
END $$;
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("campaigns", "0001_initial")]
    operations = [migrations.RunPython(forward, migrations.RunPython.noop)]
