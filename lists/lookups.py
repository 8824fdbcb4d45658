"""
Query pieces shared by subscriber search and segments.

Django's `icontains` compiles to `UPPER(col) LIKE UPPER(%s)` on Postgres, which
no index serves; the `ilike` lookup here writes `col ILIKE %s` (segments' text
conditions; subscriber search uses the word index of migration 0008). Attribute
equality uses JSONB containment (`attributes @> '{"k": "v"}'`), which the
jsonb_path_ops GIN index serves; SQLite (the embedded default) gets equivalent
portable SQL without the indexes.
"""

import re

from django.db import connection
from django.db.models import CharField, Func, Lookup, Q, TextField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.lookups import Exact

# Attribute names usable in searches (`plan:pro`), segments and import mappings.
ATTRIBUTE_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")
NUMBER = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"


class ILike(Lookup):
    """`field__ilike="%pattern%"`: a raw (already escaped) LIKE pattern, case-insensitive."""

    lookup_name = "ilike"
    prepare_rhs = False

    def as_sql(self, compiler, connection):
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]

    def as_sqlite(self, compiler, connection):
        # SQLite's LIKE ignores ASCII case already, and knows no default escape character.
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} LIKE {rhs} ESCAPE '\\'", [*lhs_params, *rhs_params]


CharField.register_lookup(ILike)
TextField.register_lookup(ILike)


def like_pattern(text, *, start="%", end="%"):
    """A LIKE pattern matching `text` literally (its % _ and \\ escaped)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{start}{escaped}{end}"


def text_contains(field, text):
    return Q(**{f"{field}__ilike": like_pattern(text)})


def attribute_text(key):
    """The attribute's value as text (NULL when absent)."""
    return KeyTextTransform(key, "attributes")


def attribute_equals(key, value):
    """attributes[key] == value (text), served by the GIN index on Postgres.

    Imports store text; the API may store numbers, so "30" also matches 30.
    """
    forms = [value, *_number_forms(value)]
    condition = Q()
    for form in forms:
        if connection.vendor == "postgresql":
            condition |= Q(attributes__contains={key: form})
        else:
            condition |= Q(Exact(attribute_text(key), form))
    return condition


def _number_forms(value):
    try:
        number = float(value)
    except (TypeError, ValueError):
        return []
    if number != number or number in (float("inf"), float("-inf")):
        return []
    return [int(number)] if number.is_integer() else [number]


class NumberOrNull(Func):
    """The attribute's text as a number, NULL when it is not one (a cast error would abort the query)."""

    def as_postgresql(self, compiler, connection):
        sql, params = compiler.compile(self.source_expressions[0])
        return f"(CASE WHEN {sql} ~ %s THEN ({sql})::numeric END)", [*params, NUMBER, *params]

    def as_sql(self, compiler, connection):
        # SQLite: digits, dots and minus only; SQLite's own CAST would read "12abc" as 12.
        sql, params = compiler.compile(self.source_expressions[0])
        return (
            f"(CASE WHEN trim({sql}) <> '' AND trim(trim({sql}), '0123456789.-') = '' THEN CAST({sql} AS REAL) END)",
            [*params, *params, *params],
        )
