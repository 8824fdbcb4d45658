"""
The sequence scheduler: finds who enters a sequence, and turns due steps into ledger rows.

`run()` is one scheduler pass (campaigns.tasks.schedule_sequences, rung by beat
every SEQUENCE_TICK_SECONDS). For each running sequence it repeats, until
nothing is due, a batch in ONE transaction:

0. lock the sequence's steps (FOR KEY SHARE), so none is deleted under the
   batch; a step deleted since the pass began makes the plan be made again;
1. claim up to SEQUENCE_BATCH_SIZE due enrollments (`FOR UPDATE SKIP LOCKED`,
   in next_step_at order, through the partial index `enrollment_due`), with
   what decides their fate computed by the same query: whether they must leave
   (unsubscribed, suppressed, blocklisted, exit tag) and whether their previous
   message is still pending (they wait for it, so steps reach the inbox in order);
2. decide each row in Python from the sequence's live steps — no queries —
   computing each next time once per (step, time zone) for the batch;
3. insert the ledger rows set-based, one `INSERT … SELECT … ON CONFLICT DO
   NOTHING` per step in the batch (a trigger checks their step and subscriber
   once per statement, see campaigns migration 0013);
4. advance every claimed enrollment with one UPDATE (`FROM unnest(…)` on
   Postgres).

Several schedulers at once take disjoint rows (SKIP LOCKED); a crash before the
commit leaves nothing behind and the rows come due again; a run that repeats a
step finds the ledger row already there (the unique (subscriber, step, entry)
index) and inserts nothing. After downtime, due steps go out once, late —
unless they are older than the sequence's `skip_after_days`, in which case they
are recorded as skipped and the subscriber moves on.

Delays count from when the previous step was queued (the pass's clock), so the
gap between two steps of one subscriber is never shorter than the delay.

The clock is injectable: `run(now=…)`, or for whole processes the environment
variable SCHEDULER_CLOCK_FILE naming a file that holds an ISO 8601 time (the
reliability tests move time forward that way instead of sleeping).
"""

import json
import logging
import os
from collections import defaultdict, namedtuple
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from lists.models import Subscriber

from . import ledger, scheduling
from .models import Enrollment, Message, Sequence

log = logging.getLogger(__name__)

# A subscriber whose previous message is still queued or retrying is looked at
# again this much later, instead of getting the next step ahead of it.
HOLD_RECHECK = timedelta(minutes=1)
ROUND_GAP = timedelta(minutes=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PENDING = (Message.QUEUED, Message.RETRY, Message.SENDING)
STALE_TEXT = "Skipped: it was due more than {days} day(s) earlier (the sequence was paused or sending stopped)."


def clock():
    """The scheduler's now: the time in SCHEDULER_CLOCK_FILE when set, else the real time."""
    path = os.environ.get("SCHEDULER_CLOCK_FILE")
    if path:
        with open(path) as handle:
            return datetime.fromisoformat(handle.read().strip())
    return timezone.now()


def knob(name):
    return getattr(settings, name)


@dataclass
class PassResult:
    claimed: int = 0
    queued: int = 0
    skipped: int = 0
    rescheduled: int = 0
    held: int = 0
    exited: int = 0
    finished: int = 0
    enrolled: int = 0

    def add(self, other):
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self


# --- The plan of one sequence -----------------------------------------------------------------------


class Plan:
    """A running sequence's live steps, loaded once per pass, and the timing arithmetic."""

    def __init__(self, sequence, now):
        self.sequence = sequence
        self.now = now
        self.list_zone = sequence.mailing_list.time_zone
        self.floor = EPOCH  # where the next claim starts (see claim)
        self.ceiling = None  # where a part of a parallel pass ends (see run_sequence)
        self._load()

    def _load(self):
        self.steps = [s for s in self.sequence.steps.order_by("position", "pk") if s.is_active]
        self.timings = {s.pk: s.timing_rule() for s in self.steps}
        self.needs_attributes = any(t.needs_attributes for t in self.timings.values())
        self.repeats_yearly = any(t.kind == scheduling.ON_DATE and t.yearly for t in self.timings.values())
        self._times = {}
        self._next = {}
        self._after = {}

    def hold_steps(self):
        """Lock the sequence's steps for the batch's transaction (FOR KEY SHARE), so none is
        deleted while the batch may write its messages: the delete waits for the commit, and
        its trigger then finds them (migration 0013). A step deleted since the plan was made:
        the plan is made again, and whoever waited for that step is planned again."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT id FROM campaigns_step WHERE sequence_id = %s FOR KEY SHARE", [self.sequence.pk])
            live = {row[0] for row in cursor.fetchall()}
        if any(step.pk not in live for step in self.steps):
            self._load()

    def after(self, position):
        found = self._after.get(position)
        if found is None:
            found = self._after[position] = [s for s in self.steps if s.position > position]
        return found

    def first_after(self, position):
        later = self.after(position)
        return later[0] if later else None

    def when(self, step, base, zone_name, attributes):
        timing = self.timings[step.pk]
        zone = scheduling.zone_for(zone_name, self.list_zone)
        if timing.needs_attributes:
            return timing.when(base=base, zone=zone, attributes=attributes)
        if base != self.now:
            return timing.when(base=base, zone=zone)
        key = (step.pk, zone)  # steps sent now: one computation per step and zone for the pass
        if key not in self._times:
            self._times[key] = timing.when(base=base, zone=zone)
        return self._times[key]

    def next_from(self, position, base, zone_name, attributes):
        """(position passed over, step, time) of the next step that can be scheduled after
        `position`; steps without a usable date for this subscriber are passed over."""
        if base is self.now and not self.needs_attributes:
            key = (position, zone_name)  # the common case: one answer per step and zone for the pass
            if key not in self._next:
                self._next[key] = self._walk(position, base, zone_name, attributes)
            return self._next[key]
        return self._walk(position, base, zone_name, attributes)

    def _walk(self, position, base, zone_name, attributes):
        passed = position
        for step in self.after(position):
            at = self.when(step, base, zone_name, attributes)
            if at is not None:
                return passed, step, at
            passed = step.position
        return passed, None, None


# --- Claim --------------------------------------------------------------------------------------------

# One row per due enrollment, with what decides its fate, in one statement: `leave`
# is why the subscriber must leave ('' to stay), `hold` whether their previous message
# is still pending. The checks must stay index probes per claimed row whatever the
# statistics say: as plain LEFT JOINs, a stale estimate of the young ledger once turned
# the pending check into 50 million comparisons per batch (16.7 s instead of 0.2 s); as
# an EXISTS, Postgres hashed every pending message of the ledger once per batch, which
# grows as a pass queues mail (1.6 s per 5,000-row batch with 100,000 pending). On
# Postgres the pending check is a LATERAL probe with LIMIT 1 (never hashed: 0.2 s).
_CLAIM = """
SELECT e.id, e.subscriber_id, e.entry, e.position, e.last_step_id, e.next_step_id, e.next_step_at, e.last_step_at,
    s.email, s.time_zone,
    CASE WHEN s.status <> 'active' THEN 'blocklisted'
         WHEN EXISTS (SELECT 1 FROM lists_suppression x WHERE x.email = lower(s.email)) THEN 'suppressed'
         WHEN NOT EXISTS (SELECT 1 FROM lists_subscription m WHERE m.subscriber_id = e.subscriber_id
                          AND m.mailing_list_id = %s AND m.status = 'confirmed') THEN 'unsubscribed'
{exit_tag}         ELSE '' END,
    {pending}{attributes}
FROM campaigns_enrollment e
JOIN lists_subscriber s ON s.id = e.subscriber_id{pending_join}
WHERE e.sequence_id = %s AND e.status = 'active' AND e.next_step_at <= %s AND e.next_step_at >= %s
ORDER BY e.next_step_at
LIMIT %s{lock}
"""


_PENDING = """(SELECT 1 FROM campaigns_message p WHERE p.subscriber_id = e.subscriber_id AND p.step_id = e.last_step_id
            AND p.entry = e.entry AND p.step_id IS NOT NULL AND p.status IN ('queued', 'retry', 'sending')"""
_PENDING_EXISTS = f"EXISTS {_PENDING})"
_PENDING_LATERAL = f"\nLEFT JOIN LATERAL {_PENDING} LIMIT 1) pending(yes) ON true"

_EXIT_TAG = """         WHEN EXISTS (SELECT 1 FROM {tag_rows} t WHERE t.subscriber_id = e.subscriber_id AND t.tag_id = %s)
             THEN 'exit_tag'
"""


def claim(plan, limit):
    """Lock up to `limit` due enrollments of the plan's sequence (SKIP LOCKED); returns Rows.

    Each batch of a pass starts where the previous one ended (`plan.floor`): the rows
    it advanced left dead entries at the head of `enrollment_due`, which Postgres
    cannot drop while any older snapshot is open, and walking over them again made
    every batch slower than the last (measured: 0.2 s, then 2.9 s per 5,000 rows).
    """
    sequence = plan.sequence
    sql = _CLAIM.format(
        attributes=", s.attributes" if plan.needs_attributes else "",
        exit_tag=_EXIT_TAG.format(tag_rows=Subscriber.tags.through._meta.db_table) if sequence.exit_tag_id else "",
        lock=" FOR UPDATE OF e SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else "",
        **({"pending": "pending.yes IS NOT NULL", "pending_join": _PENDING_LATERAL} if connection.vendor == "postgresql"
           else {"pending": _PENDING_EXISTS, "pending_join": ""}),
    )
    now = connection.ops.adapt_datetimefield_value(min(plan.now, plan.ceiling or plan.now))
    with connection.cursor() as cursor:
        floor = connection.ops.adapt_datetimefield_value(plan.floor)
        tag = [sequence.exit_tag_id] if sequence.exit_tag_id else []
        cursor.execute(sql, [sequence.mailing_list_id, *tag, sequence.pk, now, floor, limit])
        rows = cursor.fetchall()
    if connection.vendor != "postgresql":
        rows = [_typed(row) for row in rows]
    if plan.needs_attributes:  # JSON arrives as text (Django leaves decoding to JSONField)
        rows = [row[:-1] + (json.loads(row[-1]) if isinstance(row[-1], str) else row[-1],) for row in rows]
    claimed = [Row(*row) for row in rows]
    if claimed:
        plan.floor = claimed[-1].next_step_at
    return claimed


def _typed(row):
    """SQLite hands back timestamps as text or naive datetimes (in UTC)."""
    converted = list(row)
    for index in (6, 7):
        converted[index] = _parse_time(converted[index])
    return tuple(converted)


def _parse_time(value):
    if value is None:
        return value
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- Decide -------------------------------------------------------------------------------------------

Row = namedtuple(
    "Row",
    "pk subscriber_id entry position last_step_id next_step_id next_step_at last_step_at email zone leave hold"
    " attributes",
    defaults=(None,),
)
KEEP = object()  # "as it is" for _set's arguments
State = namedtuple(
    "State", "status exit_reason position entry last_step_id last_step_at next_step_id next_step_at ended_at"
)


class Decisions:
    """The new state of every claimed row, and the ledger rows to write."""

    def __init__(self, plan):
        self.plan = plan
        self.now = plan.now
        # New state -> enrollments: most rows of a batch share one of a few states (a step and
        # a time zone), so the UPDATE carries each state once and a group number per row.
        self.updates = defaultdict(list)
        self.messages = defaultdict(list)  # (step_id, status) -> [(subscriber id, entry, address)]
        self.result = PassResult()
        # The common case, a step sent and a next one planned, depends on (step, time zone,
        # entry) alone when no step reads attributes: its rows' group, found once per batch.
        self._advanced = None if plan.needs_attributes else {}
        self._stale_before = scheduling.stale_before(self.now, plan.sequence.skip_after_days)  # once per batch

    def decide(self, row):
        if row.leave:
            self.result.exited += 1
            return self._set(row, status=Enrollment.EXITED, exit_reason=row.leave, next_step_id=None,
                             next_step_at=None, ended_at=self.now)
        if row.hold:
            self.result.held += 1
            return self._set(row, next_step_at=self.now + HOLD_RECHECK)
        expected = self.plan.first_after(row.position)
        if expected is not None and expected.id == row.next_step_id:
            return self._send(row, expected)
        return self._reschedule(row)

    def _send(self, row, step):
        stale = self._stale_before is not None and row.next_step_at < self._stale_before
        self.messages[(step.id, Message.SKIPPED if stale else Message.QUEUED)].append(
            (row.subscriber_id, row.entry, row.email))
        if stale:
            self.result.skipped += 1
        else:
            self.result.queued += 1
        key = (step.id, row.zone, row.entry)
        if self._advanced is not None and key in self._advanced:
            self._advanced[key].append(row.pk)
            return
        passed, following, at = self.plan.next_from(step.position, self.now, row.zone, row.attributes)
        if following is not None:
            state = self._set(row, position=passed, last_step_id=step.id, last_step_at=self.now,
                              next_step_id=following.id, next_step_at=at)
            if self._advanced is not None:
                self._advanced[key] = self.updates[state]
            return state
        if self.plan.repeats_yearly:
            return self._next_round(row, step)
        self.result.finished += 1
        return self._set(row, status=Enrollment.FINISHED, position=passed, last_step_id=step.pk,
                         last_step_at=self.now, next_step_id=None, next_step_at=None, ended_at=self.now)

    def _next_round(self, row, step):
        """A sequence with a yearly date step starts over after its last step: next year's round.
        The round starts a minute later, so a date step just sent is not due again at once."""
        passed, first, at = self.plan.next_from(0, self.now + ROUND_GAP, row.zone, row.attributes)
        if first is None:
            self.result.finished += 1
            return self._set(row, status=Enrollment.FINISHED, position=step.position, last_step_id=step.pk,
                             last_step_at=self.now, next_step_id=None, next_step_at=None, ended_at=self.now)
        return self._set(row, entry=row.entry + 1, position=passed, last_step_id=None, last_step_at=self.now,
                         next_step_id=first.pk, next_step_at=at)

    def _reschedule(self, row):
        """The step planned for this row changed (inserted, paused, deleted, moved): plan again
        from when the previous step went; a time already past comes due at once."""
        passed, step, at = self.plan.next_from(row.position, row.last_step_at, row.zone, row.attributes)
        if step is None:
            self.result.finished += 1
            return self._set(row, status=Enrollment.FINISHED, position=passed, next_step_id=None,
                             next_step_at=None, ended_at=self.now)
        self.result.rescheduled += 1
        # Not before now: a reschedule must not make the step look stale.
        return self._set(row, position=passed, next_step_id=step.pk, next_step_at=max(at, self.now))

    def _set(self, row, *, status=Enrollment.ACTIVE, exit_reason="", position=None, entry=None, last_step_id=KEEP,
             last_step_at=None, next_step_id=KEEP, next_step_at=KEEP, ended_at=None):
        """Record the row's new state; a column not given keeps its value (last_step_at: None keeps it)."""
        state = State(
            status, exit_reason, row.position if position is None else position, row.entry if entry is None else entry,
            row.last_step_id if last_step_id is KEEP else last_step_id, last_step_at,
            row.next_step_id if next_step_id is KEEP else next_step_id,
            row.next_step_at if next_step_at is KEEP else next_step_at, ended_at,
        )
        self.updates[state].append(row.pk)
        return state


# --- Write --------------------------------------------------------------------------------------------

_INSERT = (
    "INSERT INTO campaigns_message (step_id, entry, subscriber_id, email, status, attempts, next_attempt_at,"
    " leased_by, message_id, provider_id, last_response, created_at, updated_at)"
    " SELECT %s, v.entry, v.subscriber_id, v.email, %s, 0, %s, '', '', '', %s, %s, %s"
    " FROM {rows}"
    " ON CONFLICT (subscriber_id, step_id, entry) WHERE step_id IS NOT NULL DO NOTHING"
)
# Postgres: the claimed rows' addresses travel as arrays, so the insert reads no other table.
_ROWS_PG = "unnest(%s::bigint[], %s::integer[], %s::varchar[]) AS v(subscriber_id, entry, email)"
# SQLite: the same rows as a VALUES list (SQLite has no arrays).
_ROWS_VALUES = "(SELECT column1 AS subscriber_id, column2 AS entry, column3 AS email FROM (VALUES {values})) v WHERE true"


def int_array(values):
    """A Postgres array literal of integers, for a %s::bigint[] parameter: one string made by
    join, where psycopg2 adapts a list element by element (3 µs a row for the insert's columns)."""
    return "{" + ",".join(map(str, values)) + "}"


def text_array(values):
    """A Postgres array literal of strings (each quoted, backslash and double quote escaped)."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def write_messages(decisions):
    """One INSERT … SELECT per (step, status) of the batch; returns {step_id: rows inserted}."""
    now = connection.ops.adapt_datetimefield_value(decisions.now)
    skip_text = STALE_TEXT.format(days=decisions.plan.sequence.skip_after_days)
    inserted = defaultdict(int)
    with connection.cursor() as cursor:
        for (step_id, status), rows in decisions.messages.items():
            text = skip_text if status == Message.SKIPPED else ""
            head = [step_id, status, now, text, now, now]
            if connection.vendor == "postgresql":
                # In subscriber order, as the ledger's indexes on subscriber_id are: a batch's
                # entries land on neighbouring index pages rather than all over them.
                subscriber_ids, entries, emails = zip(*sorted(rows))
                cursor.execute(_INSERT.format(rows=_ROWS_PG),
                               [*head, int_array(subscriber_ids), int_array(entries), text_array(emails)])
            else:
                values = ", ".join(["(%s, %s, %s)"] * len(rows))
                cursor.execute(_INSERT.format(rows=_ROWS_VALUES.format(values=values)),
                               [*head, *(value for row in rows for value in row)])
            if status == Message.QUEUED:
                inserted[step_id] += cursor.rowcount
    return inserted


_UPDATE_PG = """
UPDATE campaigns_enrollment e SET
    status = g.status, exit_reason = g.exit_reason, position = g.position, entry = g.entry,
    last_step_id = g.last_step_id, last_step_at = COALESCE(g.last_step_at, e.last_step_at),
    next_step_id = g.next_step_id, next_step_at = g.next_step_at, ended_at = g.ended_at
FROM unnest(%s::bigint[], %s::integer[]) AS r(id, grp)
JOIN unnest(%s::integer[], %s::varchar[], %s::varchar[], %s::integer[], %s::integer[], %s::bigint[],
            %s::timestamptz[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
    AS g(grp, status, exit_reason, position, entry, last_step_id, last_step_at, next_step_id, next_step_at, ended_at)
    ON g.grp = r.grp
WHERE e.id = r.id
"""

_UPDATE_GROUP = (
    "UPDATE campaigns_enrollment SET status = %s, exit_reason = %s, position = %s, entry = %s, last_step_id = %s,"
    " last_step_at = COALESCE(%s, last_step_at), next_step_id = %s, next_step_at = %s, ended_at = %s"
    " WHERE id IN ({ids})"
)


def write_enrollments(updates):
    """Advance every claimed enrollment ({State: [pk]}): one UPDATE … FROM unnest(…) on
    Postgres, carrying each state once; on SQLite (no arrays) one UPDATE per state."""
    if not updates:
        return
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # In id order: the rows are claimed in next_step_at order, all over the table; in
            # id order the updates walk the heap and the indexes (subscriber first) forwards.
            pairs = sorted((pk, number) for number, pks in enumerate(updates.values()) for pk in pks)
            ids, groups = zip(*pairs)
            states = [list(column) for column in zip(*updates)]
            cursor.execute(_UPDATE_PG, [int_array(ids), int_array(groups), list(range(len(updates))), *states])
            return
        adapt = connection.ops.adapt_datetimefield_value
        for state, pks in updates.items():
            values = [adapt(v) if isinstance(v, datetime) else v for v in state]
            cursor.execute(_UPDATE_GROUP.format(ids=", ".join(["%s"] * len(pks))), [*values, *pks])


# --- One batch, one sequence, one pass ---------------------------------------------------------------


def run_batch(plan, limit):
    """Claim, decide and write one batch in one transaction; returns (PassResult, {step_id: queued})."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Safe to lose in a Postgres crash: the pass is simply done again, and no
            # message of it can have been sent, since a worker's claim commits
            # synchronously and so makes this transaction durable first (WAL order).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
                # The claim's cost estimate passes jit_above_cost, and compiling it cost more
                # than running it: a batch's statements are index probes, not analytics.
                cursor.execute("SET LOCAL jit TO OFF")
            plan.hold_steps()
        claimed = claim(plan, limit)
        decisions = Decisions(plan)
        for row in claimed:
            decisions.decide(row)
        queued = write_messages(decisions)
        write_enrollments(decisions.updates)
        decisions.result.claimed = len(claimed)
        if any(queued.values()):
            transaction.on_commit(lambda: ring_steps([s for s, n in queued.items() if n]))
    return decisions.result


def run_sequence(sequence, *, now, batch_size=None, workers=None):
    """Every due step of one running sequence, batch after batch, until none is due.

    With a large backlog (after downtime, or a sequence switched on for a big list)
    the due range is split by next_step_at into SEQUENCE_WORKERS parts worked in
    parallel, each on its own database connection; Postgres does most of the work,
    so two connections keep both cores of a small machine busy. A last sweep in
    this thread takes what the parts planned for "now" (first steps, reschedules).
    """
    batch_size = batch_size or knob("SEQUENCE_BATCH_SIZE")
    workers = knob("SEQUENCE_WORKERS") if workers is None else workers
    floor, sweep = _floor(sequence, now)
    total = PassResult()
    parts = _split(sequence, now, workers, batch_size, floor) if workers > 1 else []
    if len(parts) > 1:
        with ThreadPoolExecutor(max_workers=len(parts)) as pool:
            for result in pool.map(lambda part: _run_part(sequence, now, batch_size, *part), parts):
                total.add(result)
    plan = Plan(sequence, now)
    plan.floor = floor
    total.add(_drain(plan, batch_size))
    _remember(sequence, now, sweep)
    ledger.refresh_statistics(total.queued + total.skipped)
    return total


# Where a pass starts looking. Every row a pass leaves due again is due at or after
# its `now` (a first step, a reschedule, a hold, an enrollment), so the next pass can
# start a minute before the previous one's `now` and skip the dead index entries the
# previous pass left behind. Rows a crashed concurrent scheduler left locked could
# sit below that line: a full sweep from the beginning runs every SWEEP_EVERY, and
# whenever the line is unknown (a cold cache, a clock that went back).
SWEEP_EVERY = timedelta(minutes=15)
FLOOR_MARGIN = timedelta(minutes=1)


def _floor_key(sequence_id):
    return f"campaigns:scheduler-floor:{sequence_id}"


def _floor(sequence, now):
    """(floor, whether this pass is a full sweep)."""
    seen = cache.get(_floor_key(sequence.pk))
    if seen:
        last_pass, last_sweep = (datetime.fromisoformat(value) for value in seen)
        if last_pass <= now and now - last_sweep < SWEEP_EVERY:
            return last_pass - FLOOR_MARGIN, False
    return EPOCH, True


def _remember(sequence, now, sweep):
    seen = cache.get(_floor_key(sequence.pk))
    last_sweep = now if sweep or not seen else datetime.fromisoformat(seen[1])
    cache.set(_floor_key(sequence.pk), (now.isoformat(), last_sweep.isoformat()), timeout=2 * SWEEP_EVERY.seconds)


def _drain(plan, batch_size, max_batches=10_000):
    total = PassResult()
    for _ in range(max_batches):
        result = run_batch(plan, batch_size)
        total.add(result)
        if not result.claimed:
            break
    return total


def _run_part(sequence, now, batch_size, floor, ceiling):
    """One part of a parallel pass, in its own thread and so on its own connection."""
    try:
        plan = Plan(sequence, now)
        plan.floor, plan.ceiling = floor, ceiling
        return _drain(plan, batch_size)
    finally:
        connection.close()


_BOUNDARY = (
    "SELECT next_step_at FROM campaigns_enrollment WHERE sequence_id = %s AND status = 'active'"
    " AND next_step_at >= %s AND next_step_at <= %s ORDER BY next_step_at OFFSET %s LIMIT 1"
)


def _split(sequence, now, workers, batch_size, floor=EPOCH):
    """[(floor, ceiling)] covering the due enrollments in `workers` parts of equal size,
    or [] when fewer than two batches per part are due (one connection is quicker then)."""
    if connection.vendor != "postgresql":
        return []
    at, low = (connection.ops.adapt_datetimefield_value(t) for t in (now, floor))
    bounds = []
    with connection.cursor() as cursor:
        cursor.execute(_BOUNDARY, [sequence.pk, low, at, 2 * batch_size * workers])
        if cursor.fetchone() is None:
            return []
        cursor.execute("SELECT count(*) FROM campaigns_enrollment WHERE sequence_id = %s AND status = 'active'"
                       " AND next_step_at >= %s AND next_step_at <= %s", [sequence.pk, low, at])
        due = cursor.fetchone()[0]
        for part in range(1, workers):
            cursor.execute(_BOUNDARY, [sequence.pk, low, at, due * part // workers])
            bounds.append(cursor.fetchone()[0])
    edges = [floor, *bounds, now + timedelta(microseconds=1)]
    # A part ends just before the next one starts (the claim's bounds are inclusive).
    return [(low, high - timedelta(microseconds=1)) for low, high in zip(edges, edges[1:]) if low < high]


def run(*, now=None, batch_size=None, discover_every=None):
    """One scheduler pass over every running sequence: enroll newcomers (at most every
    SEQUENCE_DISCOVERY_SECONDS per sequence), then queue every due step."""
    from .sequences import discover

    now = now or clock()
    total = PassResult()
    running = Sequence.objects.filter(status=Sequence.ACTIVE).select_related("mailing_list")
    for sequence in running:
        total.enrolled += discover(sequence, now=now, every=discover_every)
        total.add(run_sequence(sequence, now=now, batch_size=batch_size))
    if total.claimed:
        log.info("Scheduler: %s", total)
    return total


def ring_steps(step_ids):
    """Ring the senders of steps that have new ledger rows (see campaigns.step_sending)."""
    from .step_sending import ring

    for step_id in step_ids:
        ring(step_id)


def run_one(sequence_id, *, now=None):
    """A pass over one sequence (after it is switched on or someone is enrolled by hand)."""
    from .sequences import discover

    sequence = Sequence.objects.select_related("mailing_list").filter(pk=sequence_id, status=Sequence.ACTIVE).first()
    if sequence is None:
        return PassResult()
    now = now or clock()
    entered = discover(sequence, now=now, every=0)
    result = run_sequence(sequence, now=now)
    result.enrolled += entered
    return result


def tick():
    """The beat's work: a scheduler pass, then a bell for steps with due mail (retries, resumed)."""
    from .step_sending import ring_due

    result = run()
    ring_due()
    return result
