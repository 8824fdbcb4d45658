"""
What happens to the audience, announced to whoever listens: subscriber.created,
subscription.confirmed, subscription.unsubscribed and subscriber.deleted.

`lists` knows nothing of campaigns, yet campaigns turns these events into REST
hook deliveries (campaigns.hooks). So campaigns registers a listener when the
app starts (CampaignsConfig.ready) and the lists services call publish(). This
is a plain registry rather than Django signals (STYLE.md: no signals of our
own): the call sites stay greppable, there is one listener kind, and asking
`wants(event)` first means an event nobody listens to costs no payload and no
query beyond the listener's own cheap check.

Listeners run synchronously, inside the caller's transaction. campaigns'
listener writes its delivery rows there, so an event whose transaction rolls
back is never delivered, and one that commits is never lost.

Set-based work (a CSV import of a million rows) announces with publish_rows():
an SQL query selects one payload per row, built by Postgres with the *_sql
builders below (the same shape as the Python ones), and the listener writes its
rows with one INSERT … SELECT, so no payload passes through Python.
"""

import json
from dataclasses import dataclass
from typing import Callable, Optional

from django.db import connection

SUBSCRIBER_CREATED = "subscriber.created"
SUBSCRIBER_DELETED = "subscriber.deleted"
SUBSCRIPTION_CONFIRMED = "subscription.confirmed"
SUBSCRIPTION_UNSUBSCRIBED = "subscription.unsubscribed"
EVENTS = (SUBSCRIBER_CREATED, SUBSCRIBER_DELETED, SUBSCRIPTION_CONFIRMED, SUBSCRIPTION_UNSUBSCRIBED)


@dataclass(frozen=True)
class Listener:
    wants: Callable[[str], bool]  # cheap: is anyone interested in this event?
    receive: Callable[[str, list], None]  # (event, [payload dict, …])
    # (event, sql, params): the payloads are the rows of `sql`; None: they are fetched and passed to receive.
    receive_rows: Optional[Callable[[str, str, list], None]] = None


_listeners = []


def register(*, wants, receive, receive_rows=None):
    """Add a listener (once per process, from an AppConfig.ready); returns it."""
    listener = Listener(wants, receive, receive_rows)
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def unregister(listener):
    if listener in _listeners:
        _listeners.remove(listener)


def wanted(event):
    """Whether any listener wants `event` (callers may skip building payloads when not)."""
    return any(listener.wants(event) for listener in _listeners)


def publish(event, payloads):
    """Announce `event`; `payloads` is a list of dicts, or a callable returning one, called
    only when a listener wants the event."""
    interested = [listener for listener in _listeners if listener.wants(event)]
    if not interested:
        return
    if callable(payloads):
        payloads = payloads()
    if payloads:
        for listener in interested:
            listener.receive(event, list(payloads))


def publish_rows(event, sql, params=()):
    """Announce `event` once per row of `sql`, a query whose one column is the payload (jsonb, from the
    *_sql builders below), in the order of its rows. Postgres only; nothing is run when no listener wants
    the event."""
    for listener in _listeners:
        if not listener.wants(event):
            continue
        if listener.receive_rows is not None:
            listener.receive_rows(event, sql, list(params))
            continue
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT payload::text FROM ({sql}) AS p(payload)", list(params))
            payloads = [json.loads(row[0]) for row in cursor.fetchall()]
        if payloads:
            listener.receive(event, payloads)


# --- Payloads: one shape for every entry point --------------------------------------------


def _iso(value):
    return value.isoformat() if value else None


def subscriber_fields(subscriber):
    return {
        "id": subscriber.pk,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes,
        "time_zone": subscriber.time_zone,
        "status": subscriber.status,
        "created_at": _iso(subscriber.created_at),
    }


def list_payload(mailing_list):
    return {"id": mailing_list.pk, "public_id": str(mailing_list.public_id), "name": mailing_list.name}


def subscription_payload(subscription):
    return {
        "subscription": {
            "id": subscription.pk,
            "status": subscription.status,
            "source": subscription.source,
            "confirmed_at": _iso(subscription.confirmed_at),
            "unsubscribed_at": _iso(subscription.unsubscribed_at),
            "unsubscribe_reason": subscription.unsubscribe_reason,
        },
        "list": list_payload(subscription.mailing_list),
        "subscriber": subscriber_fields(subscription.subscriber),
    }


def created_payload(subscriber):
    return {"subscriber": subscriber_fields(subscriber)}


def deleted_payload(subscriber, *, erased):
    """The subscriber as it was before deletion or GDPR erasure (erased: True), so the receiving
    system can delete or erase its own copy."""
    return {"subscriber": {"id": subscriber.pk, "email": subscriber.email}, "erased": erased}


# --- The same payloads built by Postgres, for publish_rows() ------------------------------------
# Each builder takes the aliases of the tables in the caller's query; tests/test_import_hooks.py checks
# that both builders give equal payloads.


def iso_sql(column):
    """A timestamptz column as Python's isoformat() writes it (UTC; microseconds only when non-zero)."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN to_char({utc}, 'US') = '000000' THEN ''"
            f" ELSE '.' || to_char({utc}, 'US') END || '+00:00'")


def subscriber_fields_sql(s):
    return (f"jsonb_build_object('id', {s}.id, 'email', {s}.email, 'name', {s}.name, 'attributes', {s}.attributes,"
            f" 'time_zone', {s}.time_zone, 'status', {s}.status, 'created_at', {iso_sql(f'{s}.created_at')})")


def created_payload_sql(s):
    return f"jsonb_build_object('subscriber', {subscriber_fields_sql(s)})"


def subscription_payload_sql(m, mailing_list, s):
    """subscription_payload() of subscription `m`, its list and its subscriber `s`."""
    return (
        f"jsonb_build_object('subscription', jsonb_build_object('id', {m}.id, 'status', {m}.status,"
        f" 'source', {m}.source, 'confirmed_at', {iso_sql(f'{m}.confirmed_at')},"
        f" 'unsubscribed_at', {iso_sql(f'{m}.unsubscribed_at')}, 'unsubscribe_reason', {m}.unsubscribe_reason),"
        f" 'list', jsonb_build_object('id', {mailing_list}.id, 'public_id', {mailing_list}.public_id::text,"
        f" 'name', {mailing_list}.name), 'subscriber', {subscriber_fields_sql(s)})"
    )
