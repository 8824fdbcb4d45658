"""
Subscriber search by words (lists.search): one GIN index over the words of the
email address and the name replaces the two trigram indexes of 0002.

A row's words are the runs of letters and digits of lower(email || ' ' || name)
("ada.lovelace+news@gmail.com", "Ada Lovelace" → ada, lovelace, news, gmail,
com); the index holds them as a tsvector built with array_to_tsvector (no text
search parser, no dictionary), so a search term matches words by prefix
('gmail':*). About 5 entries per row instead of some 40 trigrams: inserting
188,644 subscribers costs 1.8 s of Postgres CPU for this index against 4.5 s for
the two trigram ones (lists_subscriber's other indexes: 1.1 s).

Postgres only, like 0002; the embedded SQLite database searches with LIKE.
"""

from django.db import migrations

FORWARD = [
    # The words of a text: what the index stores and what a search term is cut into, by the same function.
    """CREATE OR REPLACE FUNCTION lists_search_words(text) RETURNS text[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT array_remove(regexp_split_to_array(lower($1), '[^[:alnum:]]+'), '') $$""",
    """CREATE OR REPLACE FUNCTION lists_search_document(email text, name text) RETURNS tsvector
       LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT array_to_tsvector(lists_search_words($1 || ' ' || $2)) $$""",
    # Every word of the term as a prefix, all required: 'ada':* & 'love':*; NULL when the term has no word.
    """CREATE OR REPLACE FUNCTION lists_search_query(term text) RETURNS tsquery LANGUAGE sql IMMUTABLE PARALLEL SAFE
       AS $$ SELECT string_agg(w || ':*', ' & ')::tsquery FROM unnest(lists_search_words($1)) AS w $$""",
    "CREATE INDEX IF NOT EXISTS subscriber_search_words ON lists_subscriber USING gin (lists_search_document(email, name))",
    "DROP INDEX IF EXISTS subscriber_email_trgm",
    "DROP INDEX IF EXISTS subscriber_name_trgm",
]
BACKWARD = [
    "CREATE INDEX IF NOT EXISTS subscriber_email_trgm ON lists_subscriber USING gin (email gin_trgm_ops)",
    "CREATE INDEX IF NOT EXISTS subscriber_name_trgm ON lists_subscriber USING gin (name gin_trgm_ops)",
    "DROP INDEX IF EXISTS subscriber_search_words",
    "DROP FUNCTION IF EXISTS lists_search_query(text)",
    "DROP FUNCTION IF EXISTS lists_search_document(text, text)",
    "DROP FUNCTION IF EXISTS lists_search_words(text)",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("lists", "0007_subscription_fk_indexes_covered")]
    operations = [migrations.RunPython(_run(FORWARD), _run(BACKWARD))]
