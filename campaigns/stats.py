"""
The figures of a broadcast or a sequence step, read from rollups.

campaigns.events moves `StatsBucket` (one row per scope and hour) and
`LinkStats` (one row per scope and link) in the same transaction as the events
they count, so every figure here is a sum over a few hundred rows at most —
never a COUNT over millions of events on a page view. What was sent comes from
the ledger: the broadcast's own counters (exact, moved per batch), and for the
hourly series and for steps the `sent` column that the pipeline adds per batch
(`add_sent`). `rebuild()` recounts one scope from its events when needed.

A scope is ("broadcast", id) or ("step", id), the same key everywhere.
"""

from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone as dt_timezone

from django.apps import apps
from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from .models import Broadcast, Event, LinkStats, Message, StatsBucket

BROADCAST, STEP = Event.BROADCAST, Event.STEP
MAX_SERIES_HOURS = 24 * 90  # a series longer than this is cut to its last 90 days


# --- Moving the rollups (campaigns.events.ingest, in its transaction) --------------------------------

_COUNTER_OF_KIND = {
    Event.DELIVERED: "delivered", Event.BOUNCE: "bounced", Event.SOFT_BOUNCE: "soft_bounced",
    Event.DEFERRED: "deferred", Event.COMPLAINT: "complained", Event.UNSUBSCRIBE: "unsubscribed",
}
BUCKET_COUNTERS = (
    "sent", "delivered", "bounced", "soft_bounced", "deferred", "complained", "unsubscribed", "opens",
    "unique_opens", "clicks", "unique_clicks", "machine_opens", "machine_clicks",
)
LINK_COUNTERS = ("clicks", "unique_clicks", "machine_clicks")


def hour_of(moment):
    return moment.astimezone(dt_timezone.utc).replace(minute=0, second=0, microsecond=0)


def roll_up(new):
    """Move the rollups by newly stored events (campaigns.events.Record with `pk` set)."""
    scoped = [r for r in new if r.scope and r.scope_id]
    if not scoped:
        return
    buckets = defaultdict(Counter)
    links = defaultdict(Counter)
    firsts = _first_engagements(scoped)
    for r in scoped:
        bucket = buckets[(r.scope, r.scope_id, hour_of(r.at))]
        if r.kind in _COUNTER_OF_KIND:
            bucket[_COUNTER_OF_KIND[r.kind]] += 1
            continue
        noun = "opens" if r.kind == Event.OPEN else "clicks"
        bucket[("machine_" if r.is_machine else "") + noun] += 1
        first_of = firsts.get(r.pk, ())
        bucket.update(counter for counter in first_of if counter != "link")
        if r.kind == Event.CLICK and r.link_pk:
            link = links[(r.scope, r.scope_id, r.link_pk)]
            link["machine_clicks" if r.is_machine else "clicks"] += 1
            link["unique_clicks"] += "link" in first_of
    add_to_buckets(buckets)
    _add_to_links(links)


def _first_engagements(records):
    """{event id: counters it is the first of} for human opens and clicks tied to a message:
    "unique_opens", "unique_clicks" (first click of the message), "link" (first on that link)."""
    human = sorted(
        (r for r in records if r.message_pk and not r.is_machine and r.kind in (Event.OPEN, Event.CLICK)),
        key=lambda r: (r.at, r.pk),
    )
    if not human:
        return {}
    seen = set()
    for message_pk, kind, link_pk in _earlier_engagements({r.message_pk for r in human}, min(r.pk for r in human)):
        seen.add((message_pk, kind))
        if kind == Event.CLICK:
            seen.add((message_pk, kind, link_pk))
    firsts = {}
    for r in human:
        counters = []
        if (r.message_pk, r.kind) not in seen:
            seen.add((r.message_pk, r.kind))
            counters.append("unique_opens" if r.kind == Event.OPEN else "unique_clicks")
        if r.kind == Event.CLICK and r.link_pk and (r.message_pk, r.kind, r.link_pk) not in seen:
            seen.add((r.message_pk, r.kind, r.link_pk))
            counters.append("link")
        if counters:
            firsts[r.pk] = counters
    return firsts


def _earlier_engagements(message_pks, before_id):
    """(message, kind, link) of the human opens and clicks stored before this batch (by the
    events' message index). Plain SQL on Postgres, as in events._message_rows."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT message_id, kind, link_id FROM campaigns_event WHERE message_id = ANY(%s)"
                " AND kind IN ('open', 'click') AND NOT is_machine AND id < %s", [list(message_pks), before_id]
            )
            return cursor.fetchall()
    return Event.objects.filter(
        message_id__in=message_pks, kind__in=(Event.OPEN, Event.CLICK), is_machine=False, id__lt=before_id,
    ).values_list("message_id", "kind", "link_id").distinct()


def add_to_buckets(buckets):
    """{(scope, scope_id, hour): Counter(column=n)} added to StatsBucket rows, one upsert."""
    _upsert(StatsBucket, ("scope", "scope_id", "hour"), BUCKET_COUNTERS, buckets)


def _add_to_links(links):
    _upsert(LinkStats, ("scope", "scope_id", "link_id"), LINK_COUNTERS, links)


def _upsert(model, keys, counters, changes):
    rows = [(key, counts) for key, counts in sorted(changes.items(), key=lambda item: str(item[0])) if any(counts.values())]
    if not rows:
        return
    table = model._meta.db_table
    adapt = connection.ops.adapt_datetimefield_value
    row_sql = "(" + ", ".join(["%s"] * (len(keys) + len(counters))) + ")"
    params = []
    for key, counts in rows:
        params += [adapt(v) if isinstance(v, datetime) else v for v in key]
        params += [counts.get(c, 0) for c in counters]
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in counters)
    sql = (
        f"INSERT INTO {table} ({', '.join(keys + counters)}) VALUES {', '.join([row_sql] * len(rows))}"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


# --- What the pipeline adds ------------------------------------------------------------------------


def add_sent(scope, scope_id, count, *, at=None):
    """`count` messages of a broadcast or step were accepted for delivery (one upsert per batch)."""
    if count <= 0 or not scope_id:
        return
    add_to_buckets({(scope, scope_id, hour_of(at or timezone.now())): Counter(sent=count)})


# --- Reading ------------------------------------------------------------------------------------------


def totals(scope, scope_id):
    """Every rollup counter summed over the scope's hours: {counter: n}."""
    sums = StatsBucket.objects.filter(scope=scope, scope_id=scope_id).aggregate(
        **{name: Sum(name) for name in BUCKET_COUNTERS}
    )
    return {name: sums[name] or 0 for name in BUCKET_COUNTERS}


def broadcast_stats(broadcast):
    """The report of one broadcast: counts from the ledger and the rollups, and the rates."""
    figures = totals(BROADCAST, broadcast.pk)
    figures.update(
        sent=broadcast.sent_count, failed=broadcast.failed_count, unknown=broadcast.unknown_count,
        recipients=broadcast.recipients_count,
    )
    return _report(figures, aggregate_only=(BROADCAST, broadcast.pk) in private_scopes({(BROADCAST, broadcast.pk)}))


def step_stats(step_id):
    """The report of one sequence step, in the same shape as broadcast_stats()."""
    figures = totals(STEP, step_id)
    ledger = {"failed": 0, "unknown": 0, "recipients": 0}
    if _step_model() is not None:
        by_status = dict(
            Message.objects.filter(step_id=step_id, status__in=(Message.FAILED, Message.UNKNOWN))
            .values_list("status").annotate(n=Count("pk")).order_by()
        )
        ledger.update(failed=by_status.get(Message.FAILED, 0), unknown=by_status.get(Message.UNKNOWN, 0))
    figures.update(ledger)
    return _report(figures, aggregate_only=(STEP, step_id) in private_scopes({(STEP, step_id)}))


def _report(figures, *, aggregate_only):
    sent = figures["sent"]
    reported = figures["delivered"]
    # ESPs report deliveries; an SMTP relay does not, so there the figure is what was
    # accepted minus what bounced, and says so.
    figures["delivered_is_estimate"] = not reported and sent > 0
    if not reported:
        figures["delivered"] = max(0, sent - figures["bounced"] - figures["soft_bounced"])
    figures["aggregate_only"] = aggregate_only
    if aggregate_only:  # opens and clicks are not tied to messages, so nothing is unique
        figures["unique_opens"] = figures["unique_clicks"] = None
    figures["rates"] = _rates(figures)
    return figures


def _rate(part, whole):
    return round(part / whole, 4) if whole and part is not None else None


def _rates(f):
    reach = f["delivered"] or f["sent"]
    return {
        "delivery": _rate(f["delivered"], f["sent"]),
        "bounce": _rate(f["bounced"] + f["soft_bounced"], f["sent"]),
        "complaint": _rate(f["complained"], f["sent"]),
        "unsubscribe": _rate(f["unsubscribed"], reach),
        "open": _rate(f["unique_opens"], reach),
        "click": _rate(f["unique_clicks"], reach),
        "click_to_open": _rate(f["unique_clicks"], f["unique_opens"]),
    }


def timeseries(scope, scope_id, *, hours=None):
    """Hourly figures, oldest first, gaps filled with zeros: [{"hour": datetime, counter: n, …}]."""
    rows = list(StatsBucket.objects.filter(scope=scope, scope_id=scope_id).order_by("hour").values("hour", *BUCKET_COUNTERS))
    if not rows:
        return []
    last = rows[-1]["hour"]
    first = max(rows[0]["hour"], last - timedelta(hours=(hours or MAX_SERIES_HOURS) - 1))
    by_hour = {row["hour"]: row for row in rows}
    series, hour = [], first
    while hour <= last:
        series.append(by_hour.get(hour) or {"hour": hour, **{name: 0 for name in BUCKET_COUNTERS}})
        hour += timedelta(hours=1)
    return series


def link_clicks(scope, scope_id, *, limit=50):
    """Clicks per link, most clicked first: [{"url", "clicks", "unique_clicks", "machine_clicks"}]."""
    rows = (
        LinkStats.objects.filter(scope=scope, scope_id=scope_id).select_related("link")
        .order_by("-clicks", "link_id")[:limit]
    )
    return [
        {"url": row.link.url, "clicks": row.clicks, "unique_clicks": row.unique_clicks,
         "machine_clicks": row.machine_clicks}
        for row in rows
    ]


# --- Privacy -------------------------------------------------------------------------------------------


def _step_model():
    try:
        return apps.get_model("campaigns", "Step")
    except LookupError:
        return None


def private_scopes(scopes):
    """The broadcasts and steps among `scopes` that went to an aggregate-only list
    (lists.MailingList.privacy_mode): their opens and clicks are stored without their message."""
    broadcast_ids = {scope_id for scope, scope_id in scopes if scope == BROADCAST}
    step_ids = {scope_id for scope, scope_id in scopes if scope == STEP}
    private = set()
    if broadcast_ids:
        found = Broadcast.objects.filter(pk__in=broadcast_ids, lists__privacy_mode=True).values_list("pk", flat=True)
        private |= {(BROADCAST, pk) for pk in found}
    Step = _step_model()
    if step_ids and Step is not None:
        found = Step.objects.filter(pk__in=step_ids, sequence__mailing_list__privacy_mode=True).values_list("pk", flat=True)
        private |= {(STEP, pk) for pk in found}
    return private


# --- Recount -------------------------------------------------------------------------------------------

_EVENT_SQL = """
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AS hour,
       count(*) FILTER (WHERE kind = 'delivered'), count(*) FILTER (WHERE kind = 'bounce'),
       count(*) FILTER (WHERE kind = 'soft_bounce'), count(*) FILTER (WHERE kind = 'deferred'),
       count(*) FILTER (WHERE kind = 'complaint'), count(*) FILTER (WHERE kind = 'unsubscribe'),
       count(*) FILTER (WHERE kind = 'open' AND NOT is_machine), count(*) FILTER (WHERE kind = 'click' AND NOT is_machine),
       count(*) FILTER (WHERE kind = 'open' AND is_machine), count(*) FILTER (WHERE kind = 'click' AND is_machine)
  FROM campaigns_event WHERE scope = %s AND scope_id = %s GROUP BY 1
"""
_FIRSTS_SQL = """
SELECT date_trunc('hour', first AT TIME ZONE 'UTC'), count(*) FILTER (WHERE kind = 'open'),
       count(*) FILTER (WHERE kind = 'click')
  FROM (SELECT kind, min(created_at) AS first FROM campaigns_event
         WHERE scope = %s AND scope_id = %s AND kind IN ('open', 'click') AND NOT is_machine
           AND message_id IS NOT NULL GROUP BY message_id, kind) firsts
 GROUP BY 1
"""
_LINKS_SQL = """
INSERT INTO campaigns_linkstats (scope, scope_id, link_id, clicks, unique_clicks, machine_clicks)
SELECT %s, %s, link_id, count(*) FILTER (WHERE NOT is_machine),
       count(DISTINCT message_id) FILTER (WHERE NOT is_machine), count(*) FILTER (WHERE is_machine)
  FROM campaigns_event WHERE scope = %s AND scope_id = %s AND kind = 'click' AND link_id IS NOT NULL
 GROUP BY link_id
"""
_EVENT_COLUMNS = ("delivered", "bounced", "soft_bounced", "deferred", "complained", "unsubscribed", "opens",
                  "clicks", "machine_opens", "machine_clicks")


def rebuild(scope, scope_id):
    """Recount one broadcast's or step's rollups from its events and ledger, set-based, in one
    transaction (Postgres). For repairs and for seeded data; the drain keeps them current."""
    if connection.vendor != "postgresql":
        raise RuntimeError("Recounting statistics needs Postgres.")
    buckets = {}

    def bucket(hour):
        hour = hour.replace(tzinfo=dt_timezone.utc) if timezone.is_naive(hour) else hour
        return buckets.setdefault(hour, Counter())

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_EVENT_SQL, [scope, scope_id])
        for hour, *counts in cursor.fetchall():
            bucket(hour).update(dict(zip(_EVENT_COLUMNS, counts)))
        cursor.execute(_FIRSTS_SQL, [scope, scope_id])
        for hour, opens, clicks in cursor.fetchall():
            bucket(hour).update(unique_opens=opens, unique_clicks=clicks)
        for hour, sent in _sent_by_hour(cursor, scope, scope_id):
            bucket(hour)["sent"] += sent
        StatsBucket.objects.filter(scope=scope, scope_id=scope_id).delete()
        LinkStats.objects.filter(scope=scope, scope_id=scope_id).delete()
        add_to_buckets({(scope, scope_id, hour): counts for hour, counts in buckets.items()})
        cursor.execute(_LINKS_SQL, [scope, scope_id, scope, scope_id])
    return len(buckets)


def _sent_by_hour(cursor, scope, scope_id):
    column = "broadcast_id" if scope == BROADCAST else "step_id"
    if scope == STEP and _step_model() is None:
        return []
    cursor.execute(
        f"SELECT date_trunc('hour', sent_at AT TIME ZONE 'UTC'), count(*) FROM campaigns_message"
        f" WHERE {column} = %s AND status = 'sent' AND sent_at IS NOT NULL GROUP BY 1",
        [scope_id],
    )
    return cursor.fetchall()
