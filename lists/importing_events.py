"""
What an import announces (lists.events): subscriber.created for each subscriber
it created, subscription.confirmed for each subscription it created or renewed
as confirmed (an importer vouching for consent), subscription.unsubscribed for
each one it unsubscribed. Updated subscribers and skipped rows announce nothing.

The events are written in the import's own transaction, so a rolled-back import
announces nothing and a committed one loses nothing; and each is looked at only
when a listener wants it (a cached check), so an import nobody listens to costs
what it cost before.

The Postgres merge (lists.importing_pg) announces set-based, from its temporary
tables, once its writes are done: the payloads are built by Postgres
(lists.events.publish_rows), never row by row in Python, whatever the size of
the file. The portable engine (lists.importing_orm) announces each batch from
its objects.
"""

from . import events
from .models import ImportJob, MailingList, Subscriber, Subscription

S = Subscriber._meta.db_table
M = Subscription._meta.db_table
L = MailingList._meta.db_table

# The subscribers whose rows the merge kept (lists.importing_pg: import_new holds those it created,
# import_known joined to import_row those that existed and were not skipped).
_MERGED = ("SELECT subscriber_id FROM import_new UNION ALL"
           " SELECT k.subscriber_id FROM import_known k JOIN import_row r ON r.line = k.line")
_SUBSCRIPTIONS = f"FROM {M} m JOIN {S} s ON s.id = m.subscriber_id JOIN {L} l ON l.id = m.mailing_list_id"


def announce_merge(job, details):
    """Called by lists.importing_pg.merge after its writes, inside its transaction."""
    if job.mode in (ImportJob.ADD, ImportJob.UPSERT):
        if events.wanted(events.SUBSCRIBER_CREATED):
            events.publish_rows(events.SUBSCRIBER_CREATED, f"SELECT {events.created_payload_sql('s')}"
                                f" FROM import_new n JOIN {S} s ON s.id = n.subscriber_id ORDER BY s.id")
        if job.confirmed and events.wanted(events.SUBSCRIPTION_CONFIRMED):
            # This import's consent record is on exactly the subscriptions it created or renewed.
            events.publish_rows(
                events.SUBSCRIPTION_CONFIRMED,
                f"SELECT {events.subscription_payload_sql('m', 'l', 's')} {_SUBSCRIPTIONS}"
                f" WHERE m.mailing_list_id = %s AND m.status = %s AND m.consent_form = %s"
                f" AND m.subscriber_id IN ({_MERGED}) ORDER BY m.id",
                [job.mailing_list_id, Subscription.CONFIRMED, details.consent_form],
            )
    elif job.mode == ImportJob.UNSUBSCRIBE and events.wanted(events.SUBSCRIPTION_UNSUBSCRIBED):
        # now() is the transaction's start: the time the merge's UPDATE wrote on the rows it unsubscribed.
        on_list = "AND m.mailing_list_id = %s" if job.mailing_list_id else ""
        events.publish_rows(
            events.SUBSCRIPTION_UNSUBSCRIBED,
            f"SELECT {events.subscription_payload_sql('m', 'l', 's')} {_SUBSCRIPTIONS}"
            " WHERE m.subscriber_id IN (SELECT subscriber_id FROM import_match) AND m.status = %s"
            f" AND m.unsubscribed_at = now() AND m.unsubscribe_reason = %s {on_list} ORDER BY m.id",
            [Subscription.UNSUBSCRIBED, details.unsubscribe_reason, *([job.mailing_list_id] if on_list else [])],
        )


# --- The portable engine, batch by batch --------------------------------------------------------------


def announce_created(subscribers):
    """`subscribers`: those a batch just created."""
    if subscribers and events.wanted(events.SUBSCRIBER_CREATED):
        events.publish(events.SUBSCRIBER_CREATED, lambda: [events.created_payload(s) for s in subscribers])


def announce_subscriptions(event, ids):
    """`event` (confirmed or unsubscribed) for the subscriptions with these ids."""
    if ids and events.wanted(event):
        changed = Subscription.objects.filter(pk__in=ids).select_related("subscriber", "mailing_list").order_by("pk")
        events.publish(event, lambda: [events.subscription_payload(s) for s in changed])
