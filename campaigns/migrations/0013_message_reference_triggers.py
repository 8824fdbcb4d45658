"""The ledger's links to its step and subscriber are kept by triggers instead of foreign-key
constraints (Postgres). A constraint checks every inserted row with its own query, two thirds
of the cost of writing a step's messages (measured on 50,000 rows: 32 µs a row with both
constraints, 13 µs without them; 5,000-row inserts at 1,000,000 subscribers: 30 µs with the
constraints, 20 µs with this trigger); the check trigger runs once per INSERT statement, set-based,
and takes the same FOR KEY SHARE row locks as a constraint, so the step or subscriber cannot be
deleted until the inserting transaction ends, and an insert that meets a deleted one fails
with foreign_key_violation (an IntegrityError), as before.

The delete triggers do what ON DELETE SET NULL did, in the deleting transaction and with a
fresh snapshot (read committed), so they also see rows that an insert holding the row lock
committed meanwhile; Django's own SET NULL runs before its DELETE and cannot. A deleted step's
unsent messages (queued, retry) are cancelled as well, as campaigns.sequences.delete_step
does: with neither a step nor a broadcast no sender would ever take them.

SQLite (the embedded single-process default) has no triggers here: Django's SET NULL emulation
handles deletes, and SQLite runs one writing transaction at a time, so no insert can race one.
"""

from importlib import import_module

import django.db.models.deletion
from django.db import migrations, models

CANCELLED = "Cancelled: the step or sequence was deleted."

FORWARD = f"""
CREATE FUNCTION campaigns_message_check_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  ids bigint[];
  found integer;
BEGIN
  -- = ANY(array): index probes whatever the size (the planner knows nothing of new_rows).
  ids := ARRAY(SELECT DISTINCT step_id FROM new_rows WHERE step_id IS NOT NULL);
  IF cardinality(ids) > 0 THEN
    SELECT count(*) INTO found FROM (SELECT 1 FROM campaigns_step t WHERE t.id = ANY (ids) FOR KEY SHARE OF t) x;
    IF found <> cardinality(ids) THEN
      RAISE foreign_key_violation USING MESSAGE = 'campaigns_message: step_id refers to a step that does not exist';
    END IF;
  END IF;
  ids := ARRAY(SELECT DISTINCT subscriber_id FROM new_rows WHERE subscriber_id IS NOT NULL);
  IF cardinality(ids) > 0 THEN
    SELECT count(*) INTO found FROM (SELECT 1 FROM lists_subscriber t WHERE t.id = ANY (ids) FOR KEY SHARE OF t) x;
    IF found <> cardinality(ids) THEN
      RAISE foreign_key_violation
        USING MESSAGE = 'campaigns_message: subscriber_id refers to a subscriber that does not exist';
    END IF;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER campaigns_message_check_inserted AFTER INSERT ON campaigns_message
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION campaigns_message_check_inserted();

-- Rows whose link changes (rare: the senders' updates never set these columns, and Django's
-- save() sets them unchanged, which the WHEN clause passes over).
CREATE FUNCTION campaigns_message_check_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.step_id IS DISTINCT FROM OLD.step_id AND NEW.step_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM campaigns_step t WHERE t.id = NEW.step_id FOR KEY SHARE OF t) THEN
    RAISE foreign_key_violation USING MESSAGE = 'campaigns_message: step_id refers to a step that does not exist';
  END IF;
  IF NEW.subscriber_id IS DISTINCT FROM OLD.subscriber_id AND NEW.subscriber_id IS NOT NULL
     AND NOT EXISTS (SELECT 1 FROM lists_subscriber t WHERE t.id = NEW.subscriber_id FOR KEY SHARE OF t) THEN
    RAISE foreign_key_violation
      USING MESSAGE = 'campaigns_message: subscriber_id refers to a subscriber that does not exist';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER campaigns_message_check_updated AFTER UPDATE OF step_id, subscriber_id ON campaigns_message
  FOR EACH ROW WHEN ((NEW.step_id IS DISTINCT FROM OLD.step_id AND NEW.step_id IS NOT NULL)
                     OR (NEW.subscriber_id IS DISTINCT FROM OLD.subscriber_id AND NEW.subscriber_id IS NOT NULL))
  EXECUTE FUNCTION campaigns_message_check_updated();

-- Row-level, so each is an index probe (message_step_status; the subscriber_id index).
CREATE FUNCTION campaigns_step_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE campaigns_message SET step_id = NULL,
      status = CASE WHEN status IN ('queued', 'retry') THEN 'cancelled' ELSE status END,
      last_response = CASE WHEN status IN ('queued', 'retry') THEN '{CANCELLED}' ELSE last_response END,
      updated_at = CASE WHEN status IN ('queued', 'retry') THEN now() ELSE updated_at END
    WHERE step_id = OLD.id;
  RETURN NULL;
END $$;

CREATE TRIGGER campaigns_step_deleted AFTER DELETE ON campaigns_step
  FOR EACH ROW EXECUTE FUNCTION campaigns_step_deleted();

CREATE FUNCTION campaigns_subscriber_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE campaigns_message SET subscriber_id = NULL WHERE subscriber_id = OLD.id;
  RETURN NULL;
END $$;

CREATE TRIGGER campaigns_subscriber_deleted AFTER DELETE ON lists_subscriber
  FOR EACH ROW EXECUTE FUNCTION campaigns_subscriber_deleted();
"""

BACKWARD = """
DROP TRIGGER campaigns_subscriber_deleted ON lists_subscriber;
DROP FUNCTION campaigns_subscriber_deleted();
DROP TRIGGER campaigns_step_deleted ON campaigns_step;
DROP FUNCTION campaigns_step_deleted();
DROP TRIGGER campaigns_message_check_updated ON campaigns_message;
DROP FUNCTION campaigns_message_check_updated();
DROP TRIGGER campaigns_message_check_inserted ON campaigns_message;
DROP FUNCTION campaigns_message_check_inserted();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)
        # The subscriber constraint is back (reverting the AlterField above): with SET NULL, as 0002 made it.
        schema_editor.execute(import_module("campaigns.migrations.0002_message_subscriber_on_delete_set_null").FORWARD,
                              params=None)


class Migration(migrations.Migration):

    dependencies = [
        ('campaigns', '0012_message_index_diet'),
        ('lists', '0006_reject_disposable_help_text'),
    ]

    operations = [
        migrations.RunPython(forward, backward),
        migrations.AlterField(
            model_name='message',
            name='step',
            field=models.ForeignKey(blank=True, db_constraint=False, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to='campaigns.step'),
        ),
        migrations.AlterField(
            model_name='message',
            name='subscriber',
            field=models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='messages', to='lists.subscriber'),
        ),
    ]
