"""
The delivery pipeline: Postgres is the queue, Celery is the bell.

`run_slot(broadcast_id, slot)` is what a send task does: claim a batch (see
ledger.claim), render each message from a template compiled once per process,
send the batch over one connection, record each outcome at once (in the lease's
journal in Redis, written to Postgres in sets: campaigns.journal), repeat until
the time slice is used or nothing is due. `kick()`, rung by beat every few
seconds, starts due broadcasts, writes their ledgers, reaps expired leases and
rings one bell per free slot. Nothing waits in Celery for longer than a few
seconds: a message due in an hour is a ledger row with `next_attempt_at`.
"""

import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from . import backends, brakes, journal, ledger, ratelimit, stats, throttle, warmup
from . import composing
from .composing import Job, NotSendable
from .models import Backend, Broadcast, Event, Message

log = logging.getLogger(__name__)

# Consecutive 5.7.x policy rejections that pause a broadcast (the sending domain or IP
# is being refused, and going on would only hurt its reputation further) are set on
# the bounce policy: campaigns.brakes.policy_pause_after().
# Connection failures in a row after which a backend is skipped for BACKEND_REST.
FAILOVER_AFTER = 3
BACKEND_REST = timedelta(minutes=2)
OK_WRITTEN_EVERY = timedelta(minutes=1)  # how stale a healthy backend's last_ok_at may get
# A worker waits in-process for the rate limit up to this long; a longer wait
# (a spent daily quota) hands the rows back to the queue with that delay.
MAX_RATE_WAIT = 5.0
STATUS_CHECK_EVERY = 1.0  # seconds between pause/cancel checks inside a batch


def knob(name):
    return getattr(settings, name)


# --- Choosing a backend ------------------------------------------------------------------


def pick_backend(broadcast, *, now=None):
    """The backend for the next batch: the broadcast's own, else by priority, skipping
    inactive ones and those resting after failures. The local outbox is used only
    when it comes first, never as a failover for a real backend."""
    from .defaults import ensure_env_backend

    ensure_env_backend()
    now = now or timezone.now()
    usable = list(
        Backend.objects.filter(is_active=True).filter(Q(down_until__isnull=True) | Q(down_until__lte=now))
        .order_by("priority", "pk")
    )
    if broadcast.backend_id:
        usable.sort(key=lambda b: b.pk != broadcast.backend_id)
    if not usable:
        return None
    first = usable[0]
    if first.kind == Backend.OUTBOX and first.pk == _first_choice(broadcast):
        return first
    return next((b for b in usable if b.kind != Backend.OUTBOX), None)


def _first_choice(broadcast):
    if broadcast.backend_id:
        return broadcast.backend_id
    return Backend.objects.filter(is_active=True).order_by("priority", "pk").values_list("pk", flat=True).first()


def backend_failed(backend, error):
    """Count a connection failure; after FAILOVER_AFTER in a row the backend rests."""
    now = timezone.now()
    Backend.objects.filter(pk=backend.pk).update(
        consecutive_failures=F("consecutive_failures") + 1, last_error=str(error)[:2000], last_error_at=now
    )
    Backend.objects.filter(pk=backend.pk, consecutive_failures__gte=FAILOVER_AFTER).update(
        down_until=now + BACKEND_REST
    )
    log.warning("Backend %s failed: %s", backend, error)


def backend_ok(backend):
    """The backend answered: its failures are cleared. While all is well, `last_ok_at` is written at most
    once a minute: rewriting the same row after every batch of every worker was a new row version per
    batch, and the workers waited on each other's row lock for it."""
    now = timezone.now()
    Backend.objects.filter(
        Q(consecutive_failures__gt=0) | Q(down_until__isnull=False) | Q(last_ok_at__isnull=True)
        | Q(last_ok_at__lt=now - OK_WRITTEN_EVERY),
        pk=backend.pk,
    ).update(last_ok_at=now, consecutive_failures=0, down_until=None)


# --- One batch -----------------------------------------------------------------------------


@dataclass
class BatchResult:
    claimed: int = 0
    counts: Counter = field(default_factory=Counter)
    stop: bool = False  # nothing more to do for now (paused, no backend, quota spent)


class Batch:
    """Sends the claimed rows in id order over one transport and records each outcome."""

    def __init__(self, broadcast, backend, rows, token):
        self.broadcast = broadcast
        self.backend = backend
        self.rows = rows
        self.token = token
        self.position = 0  # rows[:position] are recorded, skipped or handed back
        self.in_flight = None  # a row whose body was submitted and whose outcome is not recorded yet
        self.skipped = set()  # rows found unmailable after the claim (unsubscribed meanwhile)
        self.counts = Counter()
        self.journal = journal.Journal(token, counts=self.counts)  # outcomes: Redis at once, Postgres in sets
        self.policy_streak = []
        self.network_streak = 0
        self.stop = False
        self.limits = ratelimit.Limits.of(backend)
        self.warmup = warmup.Allowance(backend, broadcast.sender.from_email)  # today's share of the warm-up caps
        self.allowance = 0
        self.delays = backend.retry_delays()
        # The claim set the lease just before: it is renewed a fifth of a lease from now (opening the
        # connection may take that long), not at once (an UPDATE of every row of the batch).
        self.lease_renewed = time.monotonic()
        self.next_check = time.monotonic() + STATUS_CHECK_EVERY

    def run(self, job):
        self.job = job
        if self._defer_throttled():
            self.journal.close()  # nothing in it: every row went back to the queue
            return
        try:
            with self._commit_mode(), backends.transport_for(self.backend) as transport:
                self.transport = transport
                self._send_all()
        except backends.Unreachable as exc:
            backend_failed(self.backend, exc)
            self.stop = True
        finally:
            self._settle()
        if self.counts[Message.SENT]:
            backend_ok(self.backend)

    def _commit_mode(self):
        """A journaled batch writes its outcomes in sets, each committed synchronously (see
        campaigns.journal); one writing each outcome on its own does so with asynchronous commit."""
        return ledger.asynchronous_commit() if not self.journal.is_journaled else contextlib.nullcontext()

    def _settle(self):
        """Whatever happened, leave no row of ours behind: a submitted message whose outcome
        was lost is `unknown` (never sent again), the others go back to the queue, and the
        journal's outcomes are in Postgres before the journal goes."""
        self.warmup.give_back()
        if self.in_flight is not None:
            row, self.in_flight = self.in_flight, None
            self.position = max(self.position, self.rows.index(row) + 1)
            self._record(row, Message.UNKNOWN, "Unknown: the outcome was lost (the worker failed mid-send); "
                         "it may or may not have been delivered.", message_id=composing.message_id_for(row["pk"]))
        self._hand_back(delay=0 if not self.stop else 15)
        if not self.journal.close():
            self._lease_lost()

    def _send_all(self):
        """Each message: submit it (chaining the next one's envelope), render the next one
        while the server answers, collect the outcome, record it."""
        index, envelope = self._next_sendable(0)
        while envelope is not None and not self.stop:
            self.position = index
            if not self._may_continue():
                return
            if self.rows[index]["pk"] in self.skipped:  # unsubscribed since it was rendered
                index, envelope = self._next_sendable(index + 1)
                continue
            following = self._next_mailable(index + 1)
            chain = (envelope.from_email, self.rows[following]["email"]) if following is not None else None
            self.in_flight = self.rows[index]
            self.transport.submit(envelope, chain=chain)
            next_index, next_envelope = self._next_sendable(index + 1)
            outcome = self.transport.collect()
            if chain is not None and next_index != following:
                self.transport.abandon()  # the chained recipient turned out unsendable
            self._apply(self.rows[index], outcome, envelope.message_id)
            self.in_flight = None
            index, envelope = next_index, next_envelope
            self.position = max(self.position, index)

    def _next_mailable(self, index):
        while index < len(self.rows) and self.rows[index]["pk"] in self.skipped:
            index += 1
        return index if index < len(self.rows) else None

    def _next_sendable(self, index):
        """(index, envelope) of the first row from `index` that renders; the others fail with the reason."""
        while (index := self._next_mailable(index)) is not None:
            row = self.rows[index]
            try:
                return index, self.job.envelope(row, with_raw=self.transport.wants_raw, backend=self.backend)
            except NotSendable as exc:
                self._record(row, Message.FAILED, str(exc), message_id="")
                index += 1
        return len(self.rows), None

    def _hand_back(self, *, delay, status=None):
        if not self.journal.flush():  # first the outcomes: a row whose outcome waits in it is not handed back
            self._lease_lost()
        rest = [row["pk"] for row in self.rows[self.position:] if row["pk"] not in self.skipped]
        released = ledger.release(rest, self.token, delay=delay, status=status)
        self.position = len(self.rows)
        if status:
            self.counts[status] += released

    # -- checks between messages --

    def _may_continue(self):
        now = time.monotonic()
        if now >= self.next_check:
            self.next_check = now + STATUS_CHECK_EVERY
            if not self.journal.flush():  # a slow batch's outcomes reach Postgres within a second
                self._lease_lost()
                return False
            if not self._still_sending():
                return False
            self._recheck_rest()
        # Renewed after a fifth of the lease, so only a worker stalled for 4/5 of it (frozen,
        # swapped out) can lose its rows to the reaper while alive.
        if now - self.lease_renewed > knob("SEND_LEASE_SECONDS") / 5:
            if not ledger.extend_lease(self.token, knob("SEND_LEASE_SECONDS")):
                log.error("Lease %s was taken over; stopping this batch.", self.token)
                self.position = len(self.rows)
                return False
            self.lease_renewed = now
        return self._take_warmup() and self._take_rate()

    def _recheck_rest(self):
        """Once a second, rows still waiting in this batch are checked again, so an unsubscribe
        stops a message even when its batch was claimed before (a slow, rate-limited send)."""
        waiting = [row["pk"] for row in self.rows[self.position + 1:] if row["pk"] not in self.skipped]
        if waiting:
            found = ledger.skip_unmailable(self.broadcast, waiting, self.token)
            self.skipped.update(found)
            self.counts[Message.SKIPPED] += len(found)

    def _still_sending(self):
        status = ledger.broadcast_status(self.broadcast.pk)
        if status == Broadcast.SENDING:
            return True
        self.stop = True
        self._hand_back(delay=0, status=Message.CANCELLED if status in (Broadcast.CANCELLED, None) else None)
        return False

    def _defer_throttled(self):
        """Rows over a mailbox provider's limit go back to the queue (campaigns.throttle); True
        when that was every row."""
        deferred = throttle.defer(self.backend, self.rows, self.token)
        self.skipped.update(deferred)
        self.stop = bool(deferred) and len(deferred) == len(self.rows)
        return self.stop

    def _take_warmup(self):
        """Over the warm-up's daily cap, the rest of the batch waits for the next day (no attempt counted)."""
        try:
            if self.warmup.take_one(len(self.rows) - self.position):
                return True
            delay = warmup.seconds_until(self.warmup.resumes_at)
        except ratelimit.RateLimitUnavailable as exc:
            log.warning("%s; the batch goes back to the queue.", exc)
            delay = 5
        else:  # the broadcast's (or step's) other due messages wait too, and its page says so
            self.warmup.hold(self.broadcast.pk, sequence=getattr(self, "sequence", None))
        self.stop = True
        self._hand_back(delay=delay)
        return False

    def _take_rate(self):
        while self.allowance < 1:
            try:
                granted, wait = ratelimit.take(self.limits, min(10, len(self.rows) - self.position))
            except ratelimit.RateLimitUnavailable as exc:
                log.warning("%s; the batch goes back to the queue.", exc)
                self.stop = True
                self._hand_back(delay=5)
                return False
            self.allowance += granted
            if granted:
                break
            if wait > MAX_RATE_WAIT:
                self.stop = True
                self._hand_back(delay=wait)
                return False
            time.sleep(wait)
        self.allowance -= 1
        return True

    # -- one message --

    def _apply(self, row, outcome, message_id):
        self.network_streak = self.network_streak + 1 if outcome.network else 0
        if outcome.kind == backends.SENT:
            self.policy_streak = []
            self._record(row, Message.SENT, outcome.response, message_id, outcome.provider_id)
        elif outcome.kind == backends.RETRY:
            self._retry(row, outcome, message_id)
        elif outcome.kind == backends.BOUNCE:
            self._record(row, Message.FAILED, outcome.response, message_id)
            _feedback(row, Event.BOUNCE, outcome.response)
        else:
            self._record(row, Message.FAILED, outcome.response, message_id)
            if outcome.kind == backends.POLICY:
                self._policy_rejection(row, outcome.response)
            elif self.backend.kind == Backend.SMTP and not outcome.network:
                # A 5xx other than 5.1.x (mailbox full, too big…): the address may recover.
                _feedback(row, Event.SOFT_BOUNCE, outcome.response)
        if self.network_streak >= FAILOVER_AFTER:
            backend_failed(self.backend, outcome.response)
            self.stop = True

    def _retry(self, row, outcome, message_id):
        first = row["first_attempt_at"] or timezone.now()
        attempt = row["attempts"] + 1
        next_at = timezone.now() + timedelta(seconds=self.delays[min(attempt, len(self.delays)) - 1])
        if next_at - first > self.backend.give_up_after:
            text = f"Gave up after {attempt} attempts: {outcome.response}"
            self._record(row, Message.FAILED, text, message_id)
            if self.backend.kind == Backend.SMTP:
                _feedback(row, Event.SOFT_BOUNCE, text)
        else:
            self._record(row, Message.RETRY, outcome.response, message_id, next_attempt_at=next_at)
            if self.backend.kind == Backend.SMTP and not outcome.network:  # the server answered 4xx
                _feedback(row, Event.DEFERRED, outcome.response, attempt=attempt)

    def _policy_rejection(self, row, response):
        self.policy_streak.append(row["pk"])
        pause_after = brakes.policy_pause_after()
        if not pause_after or len(self.policy_streak) < pause_after:
            return
        reason = (
            f"Paused after {len(self.policy_streak)} messages in a row were refused as policy violations "
            f"(5.7.x) by {self.backend}: {response[:300]} — check the sending domain's SPF/DKIM/DMARC and "
            "reputation with your provider, then resume."
        )
        self._pause(reason)
        if not self.journal.flush():  # the refused messages' outcomes are in Postgres before they go back
            self._lease_lost()
        # The refused messages were not the recipients' fault: they go again on resume.
        requeued = Message.objects.filter(pk__in=self.policy_streak, status=Message.FAILED).update(
            status=Message.QUEUED, next_attempt_at=timezone.now()
        )
        self.counts[Message.FAILED] -= requeued
        self.stop = True

    def _pause(self, reason):
        """Stop what this batch belongs to (a sequence's batch pauses the sequence instead)."""
        from .broadcasts import pause

        pause(self.broadcast, reason=reason)

    def _record(self, row, status, response, message_id, provider_id="", next_attempt_at=None):
        """Into the journal (campaigns.journal), which counts what reaches Postgres in self.counts."""
        outcome = journal.Outcome(row["pk"], status, timezone.now(), next_attempt_at, self.backend.pk, message_id,
                                  provider_id, response)
        if not self.journal.add(outcome):
            self._lease_lost()

    def _lease_lost(self):
        """The reaper took our rows (we were stalled past the lease): stop touching them."""
        log.error("Lease %s was lost while sending; stopping this batch.", self.token)
        self.position = len(self.rows)
        self.stop = True


def _feedback(row, kind, response, *, attempt=0):
    """A bounce, soft bounce or deferral from the server's reply: an event, and the bounce
    policy (campaigns.policy) decides whether the address is suppressed."""
    from . import events, policy

    message = Message(pk=row["pk"], email=row["email"], subscriber_id=row["subscriber_id"])
    policy.feedback(kind, message=message, uid=events.event_uid("smtp", row["pk"], kind, attempt),
                    source="smtp", detail=response)


def batch_limit(backend):
    """Rows per claim: SEND_BATCH_SIZE, fewer for a slow backend (at most ~30 s of sending per lease)."""
    limit = knob("SEND_BATCH_SIZE")
    if backend.rate_per_second:
        limit = max(1, min(limit, int(backend.rate_per_second * 30)))
    return limit


def send_batch(broadcast_id, *, token=None):
    """Claim, send and record one batch of a broadcast."""
    broadcast = Broadcast.objects.select_related("sender", "layout", "segment").filter(pk=broadcast_id).first()
    if broadcast is None or broadcast.status != Broadcast.SENDING:
        return BatchResult(stop=True)
    backend = pick_backend(broadcast)
    if backend is None:
        log.warning("Broadcast %s waits: no sending backend is active and reachable.", broadcast_id)
        return BatchResult(stop=True)
    try:
        # Compiled before the lease starts: a process's first batch also pays for imports.
        job = Job.for_broadcast(broadcast)
    except NotSendable as exc:  # the whole broadcast is broken: pause it with the reason
        from .broadcasts import pause

        pause(broadcast, reason=str(exc))
        return BatchResult(stop=True)
    token = token or journal.begin()
    rows, skipped = ledger.claim(
        broadcast, limit=batch_limit(backend), lease_seconds=knob("SEND_LEASE_SECONDS"), token=token
    )
    if not rows:
        journal.discard(token)
    result = BatchResult(claimed=len(rows) + skipped, counts=Counter({Message.SKIPPED: skipped}))
    try:
        if rows:
            _send_rows(Batch(broadcast, backend, rows, token), job, result)
    finally:
        ledger.add_counts(broadcast_id, result.counts)
    stats.add_sent(Event.BROADCAST, broadcast_id, result.counts[Message.SENT])
    if result.counts[Message.SENT] or result.counts[Message.FAILED]:
        brakes.after_batch(broadcast_id)
    return result


def _send_rows(batch, job, result):
    try:
        batch.run(job)
    finally:
        result.counts.update(batch.counts)
        result.stop = batch.stop


# --- Slots and the kick ---------------------------------------------------------------------


def _slot_key(broadcast_id, slot):
    return f"campaigns:slot:{broadcast_id}:{slot}"


def run_slot(broadcast_id, slot, *, budget=None):
    """Send batches for up to `budget` seconds; returns True when work remains
    (the task then rings itself again, so a slot is one chain of short tasks)."""
    if run_slice(_slot_key(broadcast_id, slot), lambda: send_batch(broadcast_id), budget=budget,
                 label=f"broadcast {broadcast_id}, slot {slot}"):
        return True
    ledger.finish_if_done(broadcast_id)
    return False


def run_slice(key, send, *, budget=None, label=""):
    """Call `send()` (one batch) for up to `budget` seconds, keeping the slot `key` alive;
    True when work remains. A sequence step's slots run the same way (campaigns.step_sending)."""
    budget = knob("SEND_SLICE_SECONDS") if budget is None else budget
    deadline = time.monotonic() + budget
    while time.monotonic() < deadline:
        cache.set(key, time.time(), timeout=knob("SEND_SLOT_TTL"))
        try:
            result = send()
        except (OperationalError, InterfaceError) as exc:  # Postgres restarted: the next batch reconnects
            log.warning("Database error in %s: %s", label, exc)
            connection.close()
            time.sleep(1)
            continue
        if result.stop or not result.claimed:
            break
    else:
        return True
    cache.delete(key)
    return False


def ring(broadcast_id):
    """Ring a bell for every free slot of a sending broadcast (after the transaction commits)."""
    from .tasks import send_broadcast_slot

    for slot in range(knob("SEND_CONCURRENCY")):
        if cache.add(_slot_key(broadcast_id, slot), time.time(), timeout=knob("SEND_SLOT_TTL")):
            transaction.on_commit(lambda s=slot: send_broadcast_slot.delay(broadcast_id, s))


def kick():
    """The periodic heartbeat of sending (beat, every SEND_KICK_SECONDS)."""
    from .broadcasts import start_due

    ledger.reap()
    start_due()
    now = timezone.now()
    for broadcast_id in Broadcast.objects.filter(status=Broadcast.SENDING).values_list("pk", flat=True):
        due = ledger.next_due(broadcast_id)
        if due is not None and due <= now:
            ring(broadcast_id)
        elif due is None:
            ledger.finish_if_done(broadcast_id)
