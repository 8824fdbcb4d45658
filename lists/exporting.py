"""
CSV exports of a list's members or of a search result, streamed: rows are read
with a server-side cursor in chunks and written as they are produced, so an
export of a million subscribers holds a few thousand rows in memory at a time.

Spreadsheets run a cell that starts with = + - @ (or a tab or carriage return
before one) as a formula ("CSV injection"); every such cell is prefixed with a
quote, which spreadsheets show as text. Attributes are flattened to one column
each ("attribute:plan"), in name order.
"""

import csv
import json

from django.db import connection
from django.db.models import CharField, Func

from .models import Subscriber, Subscription

CHUNK = 2000
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
BOM = "\ufeff"  # Excel reads a UTF-8 CSV as its local code page unless it starts with one
SUBSCRIBER_COLUMNS = ["email", "name", "time_zone", "status", "created_at", "tags"]
SUBSCRIPTION_COLUMNS = ["email", "name", "time_zone", "subscription_status", "source", "subscribed_at",
                        "confirmed_at", "unsubscribed_at", "consent_form", "tags"]


def escape_cell(value):
    """The value as CSV cell text that no spreadsheet will run as a formula."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


class _Echo:
    """csv.writer's file: hands each written line back instead of storing it."""

    def write(self, value):
        return value


def csv_lines(rows):
    """Rows (iterables of values) as escaped CSV lines, the first one with a BOM."""
    writer = csv.writer(_Echo())
    yield BOM
    for row in rows:
        yield writer.writerow([escape_cell(v) for v in row])


def attribute_keys(subscribers):
    """The attribute names used by these subscribers, sorted (one pass in the database on Postgres)."""
    if connection.vendor == "postgresql":
        keys = (subscribers.order_by().annotate(key=Func("attributes", function="jsonb_object_keys",
                                                         output_field=CharField()))
                .values_list("key", flat=True).distinct())
        return sorted(keys)
    found = set()
    for attributes in subscribers.order_by().values_list("attributes", flat=True).iterator(chunk_size=CHUNK):
        found.update(attributes or {})
    return sorted(found)


def _attribute_cells(attributes, keys):
    cells = []
    for key in keys:
        value = (attributes or {}).get(key)
        cells.append(json.dumps(value, ensure_ascii=False) if isinstance(value, (list, dict)) else value)
    return cells


def _iso(moment):
    return moment.isoformat() if moment else ""


def _tags(subscriber):
    return ", ".join(sorted(t.name for t in subscriber.tags.all()))


def subscriber_rows(subscribers):
    """Header and rows for a search result: one row per subscriber."""
    keys = attribute_keys(subscribers)
    yield [*SUBSCRIBER_COLUMNS, *(f"attribute:{k}" for k in keys)]
    for s in subscribers.prefetch_related("tags").iterator(chunk_size=CHUNK):
        yield [s.email, s.name, s.time_zone, s.status, _iso(s.created_at), _tags(s),
               *_attribute_cells(s.attributes, keys)]


def subscription_rows(mailing_list):
    """Header and rows for a list: one row per member, with the subscription's status and consent form."""
    keys = attribute_keys(Subscriber.objects.filter(subscriptions__mailing_list=mailing_list))
    yield [*SUBSCRIPTION_COLUMNS, *(f"attribute:{k}" for k in keys)]
    memberships = (Subscription.objects.filter(mailing_list=mailing_list).select_related("subscriber")
                   .prefetch_related("subscriber__tags").order_by("pk"))
    for m in memberships.iterator(chunk_size=CHUNK):
        s = m.subscriber
        yield [s.email, s.name, s.time_zone, m.status, m.source, _iso(m.created_at), _iso(m.confirmed_at),
               _iso(m.unsubscribed_at), m.consent_form, _tags(s), *_attribute_cells(s.attributes, keys)]
