"""
The message ledger as a queue: fan-out, claim, record, release, reap.

Every state change here is a set-based statement or one UPDATE per message;
nothing loops over subscribers in Python. The invariants:

- fan-out inserts one row per (subscriber, broadcast), `ON CONFLICT DO NOTHING`,
  so running it twice, in two processes, inserts nothing twice;
- a row is claimed by exactly one batch (`FOR UPDATE SKIP LOCKED` plus a lease
  token), and only the lease holder may record its outcome;
- a batch sends its rows one at a time in id order and records each outcome
  before the next send — in its lease's journal in Redis (campaigns.journal),
  written to Postgres in sets, or in Postgres directly when Redis is away — so
  when a worker dies, at most ONE of its leased rows (the lowest id still
  `sending` once the journal is applied) may have reached the server without a
  recorded outcome: the reaper marks that one `unknown` and puts the others
  back in the queue. Nothing is sent twice because a task ran twice or a worker
  died (when the journal of a dead lease was lost as well, all its rows still
  `sending` become `unknown`).

Leases and timestamps use the workers' clocks (Django's timezone.now()); the
machines of one installation are expected to keep time with NTP, and leases
are minutes long, so seconds of skew do not matter.
"""

import json
import logging
import os
import socket
import uuid
import weakref
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import timedelta

from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Case, Count, Exists, F, OuterRef, Q, Value, When
from django.db.models.functions import Lower
from django.utils import timezone

from lists.models import Subscriber, Subscription, Suppression

from . import costs, journal
from .models import Broadcast, Message

log = logging.getLogger(__name__)

PENDING = (Message.QUEUED, Message.RETRY, Message.SENDING)
COUNTER_OF_STATUS = {
    Message.SENT: "sent_count",
    Message.FAILED: "failed_count",
    Message.SKIPPED: "skipped_count",
    Message.UNKNOWN: "unknown_count",
    Message.CANCELLED: "cancelled_count",
}


# --- Fan-out ------------------------------------------------------------------------


def audience(broadcast):
    """The subscribers a broadcast goes to, as one queryset (usable as a subquery).

    Active subscribers with a confirmed subscription on one of the broadcast's
    lists (on any list when it has none), in its segment when it has one, and
    not on the suppression list. Each subscriber once, however many lists.
    """
    confirmed = Subscription.objects.filter(subscriber_id=OuterRef("pk"), status=Subscription.CONFIRMED)
    list_ids = list(broadcast.lists.values_list("pk", flat=True))
    if list_ids:
        confirmed = confirmed.filter(mailing_list_id__in=list_ids)
    suppressed = Suppression.objects.filter(email=Lower(OuterRef("email")))
    people = Subscriber.objects.filter(Exists(confirmed), ~Exists(suppressed), status=Subscriber.ACTIVE)
    if broadcast.segment_id:
        from lists.segments import segment_queryset

        people = people.filter(pk__in=segment_queryset(broadcast.segment).values("pk"))
    return people.order_by()


def fan_out(broadcast, *, send_at):
    """Write the broadcast's ledger rows in one INSERT … SELECT; returns how many were new.

    With `in_subscriber_time_zone`, `send_at`'s wall-clock time is then applied in
    each subscriber's time zone, one UPDATE per distinct zone, in the same
    transaction, so no worker sees a row with the wrong time.
    """
    people = audience(broadcast).values(audience_id=F("pk"), audience_email=F("email"))
    select_sql, params = people.query.sql_with_params()
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    sql = (
        "INSERT INTO campaigns_message (broadcast_id, subscriber_id, email, status, attempts, next_attempt_at,"
        " leased_by, message_id, provider_id, last_response, created_at, updated_at)"
        f" SELECT %s, audience.audience_id, audience.audience_email, 'queued', 0, %s, '', '', '', '', %s, %s FROM ({select_sql}) audience"
        " WHERE true ON CONFLICT (subscriber_id, broadcast_id) WHERE broadcast_id IS NOT NULL DO NOTHING"
    )
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, [broadcast.pk, adapt(send_at), adapt(now), adapt(now), *params])
            inserted = cursor.rowcount
        if broadcast.in_subscriber_time_zone:
            _apply_local_times(broadcast, send_at)
        Broadcast.objects.filter(pk=broadcast.pk).update(
            recipients_count=F("recipients_count") + inserted, fanned_out_at=now
        )
    return inserted


ANALYZE_AFTER = 10_000  # ledger rows written at once


def refresh_statistics(written):
    """After a large fan-out, fresh planner statistics for the ledger at once rather than at
    autovacuum's next visit (which may be off, or late): with the ledger's old size in its
    statistics, Postgres read every row of it to find a claimed batch (pk IN …), once per batch."""
    if written >= ANALYZE_AFTER and connection.vendor == "postgresql" and not connection.in_atomic_block:
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE campaigns_message")


def _apply_local_times(broadcast, send_at):
    wall = timezone.localtime(send_at).replace(tzinfo=None)
    mine = Message.objects.filter(broadcast=broadcast, status=Message.QUEUED)
    zones = mine.exclude(subscriber__time_zone="").values_list("subscriber__time_zone", flat=True).distinct()
    for name in list(zones):
        local = _at_wall(wall, name)
        if local is not None:  # an unknown zone keeps the default time
            mine.filter(subscriber__time_zone=name).update(next_attempt_at=local)
    # Subscribers without a zone get their list's, when it has one.
    list_zone = broadcast.lists.exclude(time_zone="").order_by("pk").values_list("time_zone", flat=True).first()
    local = _at_wall(wall, list_zone) if list_zone else None
    if local is not None:
        mine.filter(subscriber__time_zone="").update(next_attempt_at=local)


def _at_wall(wall, zone_name):
    import zoneinfo

    try:
        return wall.replace(tzinfo=zoneinfo.ZoneInfo(zone_name))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


# --- Claim ---------------------------------------------------------------------------


def new_lease_token():
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


# What a batch needs of each claimed row (campaigns.composing.Job.envelope reads these).
ROW_FIELDS = (
    "pk", "email", "attempts", "first_attempt_at", "subscriber_id", "subscriber__email", "subscriber__name",
    "subscriber__attributes", "subscriber__time_zone",
)


def claim(broadcast, *, limit, lease_seconds, token):
    """Lease up to `limit` due rows of a sending broadcast; returns the sendable ones.

    In the same transaction, rows whose subscriber meanwhile unsubscribed, was
    suppressed, blocklisted or erased are marked `skipped` with the reason.
    Returns (rows to send as dicts in id order, number skipped).
    """
    return claim_due(
        Message.objects.filter(broadcast=broadcast), broadcast, limit=limit, lease_seconds=lease_seconds,
        token=token, active=lambda: Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.SENDING).exists(),
    )


def claim_due(messages, audience, *, limit, lease_seconds, token, active):
    """claim() for any set of ledger rows (a broadcast's, a sequence step's): `audience.lists`
    are the lists whose confirmed subscribers may still be mailed; `active()` is asked in the
    claim's transaction whether the sender still wants its rows sent."""
    now = timezone.now()
    with transaction.atomic():
        if not active():
            return [], 0
        # ORDER BY exactly the claim indexes (message_claimable, message_step_claimable), with
        # no tie-break on id: an index scan that stops after `limit` rows. With ", id" Postgres
        # read and sorted every due row on each claim (50,000 rows: 15-22 ms; now 0.1 ms).
        # The batch still sends its rows in id order (see below).
        due = (
            messages.filter(status__in=Message.CLAIMABLE, next_attempt_at__lte=now)
            .order_by("next_attempt_at").select_for_update(skip_locked=True).values_list("pk", flat=True)
        )
        ids = list(due[:limit])
        if not ids:
            return [], 0
        lease_until = now + timedelta(seconds=lease_seconds)
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(_LEASE_PG, [Message.SENDING, token, lease_until, now, ids])
        else:
            Message.objects.filter(pk__in=ids).update(
                status=Message.SENDING, leased_by=token, lease_until=lease_until, updated_at=now
            )
        skipped = len(_skip_unmailable(audience, ids, now))
        rows = _claimed_rows(ids)
    return rows, skipped


# The lease and the rows to send, in Postgres with the ids as one array: through the ORM each
# statement spelled out `IN (%s, …)` with 250 parameters, and values() built each row through
# its converters (20 us of a worker's CPU a message for the claim; see BENCHMARKS.md).
_LEASE_PG = (
    "UPDATE campaigns_message SET status = %s, leased_by = %s, lease_until = %s, updated_at = %s"
    " WHERE id = ANY(%s::bigint[])"
)
_CLAIMED_ROWS_PG = """
SELECT m.id, m.email, m.attempts, m.first_attempt_at, m.subscriber_id, s.email, s.name, s.attributes::text, s.time_zone
FROM campaigns_message m LEFT JOIN lists_subscriber s ON s.id = m.subscriber_id
WHERE m.id = ANY(%s::bigint[]) AND m.status = %s ORDER BY m.id
"""


def _claimed_rows(ids):
    """The claimed rows still `sending` (not skipped), as dicts of ROW_FIELDS, in id order."""
    if connection.vendor != "postgresql":
        return list(Message.objects.filter(pk__in=ids, status=Message.SENDING).order_by("pk").values(*ROW_FIELDS))
    with connection.cursor() as cursor:
        cursor.execute(_CLAIMED_ROWS_PG, [ids, Message.SENDING])
        found = cursor.fetchall()
    loads = json.loads
    return [
        dict(zip(ROW_FIELDS, (*row[:7], None if row[7] is None else loads(row[7]), row[8]))) for row in found
    ]


SKIP_DELETED = "Skipped: the subscriber was deleted."
SKIP_SUPPRESSED = "Skipped: the address is on the suppression list."
SKIP_BLOCKLISTED = "Skipped: the subscriber is blocklisted."
SKIP_UNSUBSCRIBED = "Skipped: the subscriber unsubscribed."

# Why each claimed row may no longer be mailed, by index probes per row (LATERAL … LIMIT 1):
# as EXISTS subqueries, Postgres chose to hash every confirmed subscription of the list and
# scan every subscriber once per batch, a cost that grows with the list (6.5 ms per batch
# at 6,000 subscribers, ~0.5 ms a message at 50,000); the claimed ids drive the join, so no
# stale statistics (the ledger churns fast) can turn it into a scan. {lists}: the audience's lists.
_UNMAILABLE_PG = """
SELECT m.id, CASE WHEN m.subscriber_id IS NULL THEN %s WHEN sup.yes IS NOT NULL THEN %s
                  WHEN s.status IS DISTINCT FROM 'active' THEN %s WHEN conf.yes IS NULL THEN %s END
FROM unnest(%s::bigint[]) AS claimed(id)
CROSS JOIN LATERAL (SELECT id, subscriber_id, email FROM campaigns_message WHERE id = claimed.id LIMIT 1) m
LEFT JOIN LATERAL (SELECT status FROM lists_subscriber WHERE id = m.subscriber_id LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT 1 FROM lists_suppression x WHERE x.email = lower(m.email) LIMIT 1) sup(yes) ON true
LEFT JOIN LATERAL (SELECT 1 FROM lists_subscription c WHERE c.subscriber_id = m.subscriber_id
                   AND c.status = 'confirmed'{lists} LIMIT 1) conf(yes) ON true
"""


def _unmailable(broadcast, ids):
    """[(pk, reason)] of the rows in `ids` that may no longer be mailed."""
    list_ids = list(broadcast.lists.values_list("pk", flat=True))
    if connection.vendor == "postgresql":
        sql = _UNMAILABLE_PG.format(lists=" AND c.mailing_list_id = ANY(%s)" if list_ids else "")
        params = [SKIP_DELETED, SKIP_SUPPRESSED, SKIP_BLOCKLISTED, SKIP_UNSUBSCRIBED, list(ids),
                  *([list_ids] if list_ids else [])]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return [(pk, reason) for pk, reason in cursor.fetchall() if reason]
    confirmed = Subscription.objects.filter(subscriber_id=OuterRef("subscriber_id"), status=Subscription.CONFIRMED)
    if list_ids:
        confirmed = confirmed.filter(mailing_list_id__in=list_ids)
    suppressed = Suppression.objects.filter(email=Lower(OuterRef("email")))
    reason = Case(
        When(subscriber__isnull=True, then=Value(SKIP_DELETED)),
        When(Exists(suppressed), then=Value(SKIP_SUPPRESSED)),
        When(~Q(subscriber__status=Subscriber.ACTIVE), then=Value(SKIP_BLOCKLISTED)),
        When(~Exists(confirmed), then=Value(SKIP_UNSUBSCRIBED)),
        default=Value(""),
    )
    return list(Message.objects.filter(pk__in=ids).annotate(reason=reason).exclude(reason="").values_list("pk", "reason"))


def _skip_unmailable(broadcast, ids, now):
    skipped = _unmailable(broadcast, ids)
    by_reason = defaultdict(list)
    for pk, text in skipped:
        by_reason[text].append(pk)
    for text, pks in by_reason.items():
        Message.objects.filter(pk__in=pks, status=Message.SENDING).update(
            status=Message.SKIPPED, last_response=text, leased_by="", lease_until=None, updated_at=now
        )
    return [pk for pk, _ in skipped]


# --- Record: one message at a time, or a journal's outcomes in one statement ---------------

# Without Redis (no journal): one statement, one round trip per outcome, committed on
# its own (autocommit). While such a batch runs, its connection has synchronous_commit
# off (see asynchronous_commit below): the commit returns before the WAL reaches the
# disk. A worker crash loses nothing (Postgres has the write); a crash of Postgres
# itself (or of its machine) can lose the last fraction of a second of status writes
# (up to 3 × wal_writer_delay, 600 ms by default): those rows are still `sending`
# after the restart, and the reaper marks the lowest of each lease `unknown` and
# queues the others again, so a message accepted in that fraction of a second may go
# twice. A journaled batch commits its flushes synchronously and keeps its journal
# until the last one: a Postgres crash loses none of its outcomes.
_RECORD_SQL = (
    "UPDATE campaigns_message SET status = %s, attempts = attempts + 1, next_attempt_at = %s,"
    " first_attempt_at = COALESCE(first_attempt_at, %s), sent_at = %s, backend_id = %s, message_id = %s,"
    " provider_id = %s, last_response = %s, leased_by = '', lease_until = NULL, updated_at = %s"
    " WHERE id = %s AND leased_by = %s AND status = 'sending'"
)


# On Postgres the outcome is a prepared statement, parsed and planned once per connection:
# planning the literal UPDATE each time cost about 0.1 ms of Postgres CPU per message.
# A prepared statement lives in its session: workers need their own connections to
# Postgres (as they have), not a pooler in transaction mode.
_RECORD_EXECUTE = "EXECUTE campaigns_record_outcome (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
_prepared_connections = weakref.WeakSet()


def _prepare_record(cursor):
    raw = connection.connection
    if raw not in _prepared_connections:
        numbered = _RECORD_SQL % tuple(f"${n}" for n in range(1, 12))
        cursor.execute(
            "PREPARE campaigns_record_outcome (varchar, timestamptz, timestamptz, timestamptz, bigint, varchar,"
            " varchar, text, timestamptz, bigint, varchar) AS " + numbered.replace("%%", "%")
        )
        _prepared_connections.add(raw)


@contextmanager
def asynchronous_commit():
    """synchronous_commit off for this connection while a batch records its outcomes.

    The same as `SET LOCAL synchronous_commit = off` in each outcome's transaction,
    for one round trip per message instead of three (BEGIN, SET + UPDATE, COMMIT):
    ~0.5 ms instead of ~0.85 ms per outcome on the loaded 2-core test machine.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO DEFAULT")
        except (OperationalError, InterfaceError):
            connection.close()  # a new connection starts with the default


def reconnecting(fn):
    """Run `fn` again on a fresh connection if the database connection was lost
    (Postgres restarted, the connection was terminated). Outside transactions only;
    every statement wrapped this way is safe to run twice (it checks the lease)."""

    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (OperationalError, InterfaceError):
            if connection.in_atomic_block:
                raise
            log.warning("Database connection lost; reconnecting once.")
            connection.close()
            return fn(*args, **kwargs)

    return wrapper


# A batch's outcomes in one statement (campaigns.journal): every FLUSH_EVERY messages
# instead of one transaction per message. Only rows still `sending` under the lease are
# touched, so writing the same outcomes twice (a flush, then the reaper reading the
# journal of a worker that died before deleting it) changes nothing the second time.
_RECORD_MANY_SQL = """
UPDATE campaigns_message m SET status = o.status, attempts = m.attempts + 1,
    next_attempt_at = COALESCE(o.next_at, o.at), first_attempt_at = COALESCE(m.first_attempt_at, o.at),
    sent_at = CASE WHEN o.status = 'sent' THEN o.at END, backend_id = o.backend_id, message_id = o.message_id,
    provider_id = o.provider_id, last_response = o.response, leased_by = '', lease_until = NULL, updated_at = o.at
FROM unnest(%s::bigint[], %s::varchar[], %s::timestamptz[], %s::timestamptz[], %s::bigint[], %s::varchar[],
            %s::varchar[], %s::text[]) AS o(id, status, at, next_at, backend_id, message_id, provider_id, response)
WHERE m.id = o.id AND m.leased_by = %s AND m.status = 'sending'
RETURNING m.id, m.status
"""


@reconnecting
def record_many(outcomes, token):
    """Record outcomes (campaigns.journal.Outcome) of our lease; returns {pk: status} of those
    recorded (the others were no longer ours: the lease was lost)."""
    if len(outcomes) == 1 or connection.vendor != "postgresql":  # the prepared statement (and SQLite's)
        recorded = {o.pk: o.status for o in outcomes if _record_one(o, token)}
    else:
        columns = zip(*(
            (o.pk, o.status, o.at, o.next_attempt_at, o.backend_id, o.message_id, o.provider_id, o.response[:1000])
            for o in outcomes
        ))
        with connection.cursor() as cursor:
            cursor.execute(_RECORD_MANY_SQL, [list(c) for c in columns] + [token])
            recorded = dict(cursor.fetchall())
    _announce_all(outcomes, recorded)
    return recorded


def _record_one(o, token):
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        o.status, adapt(o.next_attempt_at or o.at), adapt(o.at), adapt(o.at if o.status == Message.SENT else None),
        o.backend_id, o.message_id, o.provider_id, o.response[:1000], adapt(o.at), o.pk, token,
    ]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            _prepare_record(cursor)
            cursor.execute(_RECORD_EXECUTE, params)
        else:
            cursor.execute(_RECORD_SQL, params)
        return cursor.rowcount == 1


def _announce_all(outcomes, recorded):
    """message.sent for the recorded `sent` outcomes, when a hook listens (one query for all)."""
    sent = {o.pk: o for o in outcomes if recorded.get(o.pk) == Message.SENT}
    if not sent:
        return
    from . import hooks

    if not hooks.wanted("message.sent"):
        return
    for row in Message.objects.filter(pk__in=list(sent)).values("pk", "email", "subscriber_id", "broadcast_id", "step_id"):
        o = sent[row["pk"]]
        hooks.emit("message.sent", {
            "message": {"id": row["pk"], "email": row["email"], "message_id": o.message_id,
                        "broadcast_id": row["broadcast_id"], "step_id": row["step_id"]},
            "subscriber": {"id": row["subscriber_id"], "email": row["email"]}, "sent_at": o.at.isoformat(),
        })


@reconnecting
def release(ids, token, *, delay=0, status=None):
    """Give leased, never-attempted rows back to the queue (or cancel them)."""
    if not ids:
        return 0
    now = timezone.now()
    back = Case(When(attempts=0, then=Value(Message.QUEUED)), default=Value(Message.RETRY))
    return Message.objects.filter(pk__in=ids, leased_by=token, status=Message.SENDING).update(
        status=status or back, next_attempt_at=now + timedelta(seconds=delay), leased_by="", lease_until=None,
        updated_at=now,
    )


@reconnecting
def extend_lease(token, seconds):
    """Keep our rows; 0 means the reaper took them (the batch must stop)."""
    return Message.objects.filter(leased_by=token, status=Message.SENDING).update(
        lease_until=timezone.now() + timedelta(seconds=seconds)
    )


@reconnecting
def broadcast_status(broadcast_id):
    return Broadcast.objects.filter(pk=broadcast_id).values_list("status", flat=True).first()


@reconnecting
def skip_unmailable(broadcast, ids, token):
    """Re-check rows of our lease that wait to be sent; returns the ids now skipped."""
    ids = list(Message.objects.filter(pk__in=ids, leased_by=token, status=Message.SENDING).values_list("pk", flat=True))
    return _skip_unmailable(broadcast, ids, timezone.now()) if ids else []


def add_counts(broadcast_id, counts):
    """Move the broadcast's progress counters by a batch's outcomes ({status: n})."""
    changes = {COUNTER_OF_STATUS[s]: F(COUNTER_OF_STATUS[s]) + n for s, n in counts.items() if n and s in COUNTER_OF_STATUS}
    if changes:
        Broadcast.objects.filter(pk=broadcast_id).update(**changes)


# --- Reaper --------------------------------------------------------------------------------


UNKNOWN_TEXT = "Unknown: the worker stopped while sending this message; it may or may not have been delivered."
LOST_JOURNAL_TEXT = ("Unknown: the worker stopped while sending, and its journal of outcomes was lost (Redis "
                     "restarted empty); it may or may not have been delivered.")


def reap(*, now=None, limit=10_000):
    """Expired leases: outcomes in a lease's journal (campaigns.journal) are recorded; then the
    lowest row of each lease still `sending` becomes `unknown` (it may have been sent when its
    worker died), the others go back to the queue. A lease whose journal was lost has every
    row still `sending` marked `unknown`. Returns (unknown, requeued)."""
    now = now or timezone.now()
    with transaction.atomic():
        if not _reaping_alone():
            return 0, 0
        expired = list(
            Message.objects.filter(status=Message.SENDING, lease_until__lt=now)
            .select_for_update(skip_locked=True).values_list("pk", "leased_by", "broadcast_id", "lease_until")[:limit]
        )
        if not expired:
            return 0, 0
        journals = _read_journals(expired, now)
        applied = _apply_journals(expired, journals)
        by_token = defaultdict(list)
        for pk, token, _, _ in expired:
            waits = journal.is_journaled(token) and token not in journals  # Redis down: a later pass
            if pk not in applied and not waits:
                by_token[token].append(pk)
        unknown, lost = set(), set()
        for token, pks in by_token.items():
            if journal.is_journaled(token) and journals[token] is None:
                lost.update(pks)
            else:
                unknown.add(min(pks))
        _mark_unknown(unknown, UNKNOWN_TEXT, now)
        _mark_unknown(lost, LOST_JOURNAL_TEXT, now)
        back = Case(When(attempts=0, then=Value(Message.QUEUED)), default=Value(Message.RETRY))
        rest = [pk for pks in by_token.values() for pk in pks if pk not in unknown and pk not in lost]
        requeued = Message.objects.filter(pk__in=rest).update(
            status=back, next_attempt_at=now, leased_by="", lease_until=None, updated_at=now
        )
        broadcast_of = {pk: b for pk, _, b, _ in expired if b}
        per_broadcast = defaultdict(Counter)
        for pk, status in [*applied.items(), *((pk, Message.UNKNOWN) for pk in unknown | lost)]:
            if pk in broadcast_of:
                per_broadcast[broadcast_of[pk]][status] += 1
        for broadcast_id, counts in per_broadcast.items():
            add_counts(broadcast_id, counts)
        cancel_pending_of_cancelled()
    journal.forget([t for t in journals if journals[t] is not None])
    if unknown or lost or applied:
        log.warning("Reaper: %d outcome(s) taken from journals, %d message(s) marked unknown, %d put back in the "
                    "queue.", len(applied), len(unknown) + len(lost), requeued)
    return len(unknown) + len(lost), requeued


_REAP_LOCK = 0x61727270  # "arrp": campaigns.ledger.reap


def _reaping_alone():
    """One reaper at a time (kicks on several workers may overlap when they run long): two
    at once could each take part of one dead lease's rows (SKIP LOCKED) and each mark the
    lowest of its part `unknown`, one more than the message that may have been in flight."""
    if connection.vendor != "postgresql":
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_xact_lock(%s)", [_REAP_LOCK])
        return cursor.fetchone()[0]


def _read_journals(expired, now):
    """{token: outcomes or None (lost)} of the journaled leases among `expired`. When Redis
    cannot be reached their rows wait for a later pass, up to journal.LOST_AFTER past the lease."""
    tokens = {token for _, token, _, _ in expired if journal.is_journaled(token)}
    try:
        return journal.read(tokens)
    except journal.Unavailable as exc:
        overdue = {token for _, token, _, until in expired if token in tokens and until < now - journal.LOST_AFTER}
        log.warning("%s; %d lease(s) wait for it.", exc, len(tokens - overdue))
        return dict.fromkeys(overdue)


def _apply_journals(expired, journals):
    """{pk: status} recorded from the journals."""
    applied = {}
    for token, outcomes in journals.items():
        if outcomes:
            applied.update(record_many(outcomes, token))
    return applied


def _mark_unknown(pks, text, now):
    if pks:
        Message.objects.filter(pk__in=pks).update(
            status=Message.UNKNOWN, attempts=F("attempts") + 1, last_response=text, leased_by="", lease_until=None,
            updated_at=now,
        )


def cancel_pending_of_cancelled():
    """Rows put back in the queue after their broadcast was cancelled are cancelled too."""
    pending = Message.objects.filter(status__in=Message.CLAIMABLE, broadcast__status=Broadcast.CANCELLED)
    per_broadcast = dict(pending.values_list("broadcast_id").annotate(n=Count("pk")).order_by())
    pending.update(status=Message.CANCELLED, updated_at=timezone.now())
    for broadcast_id, n in per_broadcast.items():
        add_counts(broadcast_id, {Message.CANCELLED: n})
    return sum(per_broadcast.values())


# --- Completion ------------------------------------------------------------------------------


def has_pending(broadcast_id):
    return Message.objects.filter(broadcast_id=broadcast_id, status__in=PENDING).exists()


def next_due(broadcast_id):
    """When the broadcast's next claimable row is due (None: none left)."""
    return (
        Message.objects.filter(broadcast_id=broadcast_id, status__in=Message.CLAIMABLE)
        .order_by("next_attempt_at").values_list("next_attempt_at", flat=True).first()
    )


def recount(broadcast_id):
    """Exact counters from the ledger: once when a broadcast ends, not per page view."""
    counts = dict(
        Message.objects.filter(broadcast_id=broadcast_id).values_list("status").annotate(n=Count("pk")).order_by()
    )
    fields = {counter: counts.get(status, 0) for status, counter in COUNTER_OF_STATUS.items()}
    fields["recipients_count"] = sum(counts.values())
    Broadcast.objects.filter(pk=broadcast_id).update(**fields)
    return fields


def finish_if_done(broadcast_id):
    """Mark a sending broadcast sent once its ledger has nothing left to do."""
    if has_pending(broadcast_id):
        return False
    with transaction.atomic():
        done = Broadcast.objects.filter(
            pk=broadcast_id, status=Broadcast.SENDING, fanned_out_at__isnull=False
        ).update(status=Broadcast.SENT, finished_at=timezone.now())
        if done:
            counts = recount(broadcast_id)
            costs.record(broadcast_id)
            _announce_finished(broadcast_id, counts)
    return bool(done)


def _announce_finished(broadcast_id, counts):
    """REST hooks' broadcast.finished, in the transaction that marks it sent."""
    from . import hooks

    if hooks.wanted("broadcast.finished"):
        broadcast = Broadcast.objects.values("pk", "name", "status", "started_at", "finished_at").get(pk=broadcast_id)
        hooks.emit("broadcast.finished", {"broadcast": {**broadcast, "id": broadcast.pop("pk"), **counts}})
