"""
Sending sequence mail through the broadcast pipeline (campaigns.sending).

The scheduler writes ledger rows with `step` set (campaigns.scheduler); from
there they travel the same road as a broadcast's: claimed in batches with
`FOR UPDATE SKIP LOCKED` and a lease, re-checked (unsubscribed from the
sequence's list, suppressed, blocklisted: skipped), rendered from the step's
content compiled once per process, sent over one connection per batch, each
outcome recorded at once, expired leases reaped by the same reaper. What
differs is small and lives here:

- rows are claimed per step (index `message_step_claimable`);
- the content is the step's, the sender, list, backend and tracking switches
  are the sequence's, and the ESP tags name the sequence and the step;
- a paused sequence holds its queued mail; a burst of policy rejections
  pauses the sequence instead of a broadcast.
"""

import logging
import time
from collections import Counter
from types import SimpleNamespace

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from lists.models import MailingList

from . import journal, ledger, sending, stats
from .composing import Job, NotSendable
from .models import Message, Sequence, Step

log = logging.getLogger(__name__)

_JOBS = {}


# --- What a step looks like to the pipeline -----------------------------------------------------------


def as_broadcast(step, **content):
    """The step, shaped like the broadcast that campaigns.composing.Job and the preview
    read: its content (or `content` overrides, for an unsaved editor), the sequence's
    sender, list and tracking switches."""
    sequence = step.sequence
    layout = content.get("layout", step.layout)
    return SimpleNamespace(
        pk=step.pk, updated_at=step.updated_at, sender=sequence.sender,
        subject=content.get("subject", step.subject), body=content.get("body", step.body),
        body_format=content.get("body_format", step.body_format), text_body=content.get("text_body", step.text_body),
        layout=layout, layout_id=(layout.pk or "unsaved") if layout is not None else None,
        lists=MailingList.objects.filter(pk=sequence.mailing_list_id), segment=None, segment_id=None,
        backend=sequence.backend, backend_id=sequence.backend_id,
        track_opens=sequence.track_opens, track_clicks=sequence.track_clicks,
    )


def job_for(step):
    """The step compiled once per process (until the step or its sequence changes)."""
    sequence = step.sequence
    key = (step.pk, step.updated_at, sequence.updated_at)
    job = _JOBS.get(key)
    if job is None:
        if len(_JOBS) > 64:
            _JOBS.clear()
        job = _JOBS[key] = Job(as_broadcast(step))
        job.broadcast_id = None
        job.tags = [f"sequence-{sequence.pk}", f"step-{step.pk}"]
    return job


# --- Claim ------------------------------------------------------------------------------------------


def claim(step, *, limit, lease_seconds, token):
    """Lease up to `limit` due rows of one step of a running sequence; returns (rows, skipped).

    As campaigns.ledger.claim: rows whose subscriber meanwhile left the list, was
    suppressed, blocklisted or erased are marked `skipped` with the reason.
    """
    audience = SimpleNamespace(lists=MailingList.objects.filter(pk=step.sequence.mailing_list_id))
    return ledger.claim_due(
        Message.objects.filter(step=step), audience, limit=limit, lease_seconds=lease_seconds, token=token,
        active=lambda: Sequence.objects.filter(pk=step.sequence_id, status=Sequence.ACTIVE).exists(),
    )


# --- One batch ----------------------------------------------------------------------------------------


@ledger.reconnecting
def sequence_status(sequence_id):
    return Sequence.objects.filter(pk=sequence_id).values_list("status", flat=True).first()


class StepBatch(sending.Batch):
    """A batch of one step's rows. It sees the step as a broadcast to the sequence's list
    (for the re-checks of unsubscribes while it sends); the sequence decides whether
    it goes on, and a burst of policy rejections pauses the sequence."""

    def __init__(self, step, backend, rows, token):
        super().__init__(as_broadcast(step), backend, rows, token)
        self.sequence = step.sequence

    def _still_sending(self):
        status = sequence_status(self.sequence.pk)
        if status == Sequence.ACTIVE:
            return True
        self.stop = True
        self._hand_back(delay=0, status=Message.CANCELLED if status is None else None)
        return False

    def _pause(self, reason):
        from .sequences import pause

        pause(self.sequence, reason=reason)


def send_batch(step_id, *, token=None):
    """Claim, send and record one batch of a step's messages."""
    step = Step.objects.select_related("sequence__sender", "sequence__backend", "layout").filter(pk=step_id).first()
    if step is None or step.sequence.status != Sequence.ACTIVE:
        return sending.BatchResult(stop=True)
    sequence = step.sequence
    backend = sending.pick_backend(sequence)
    if backend is None:
        log.warning("Sequence %s waits: no sending backend is active and reachable.", sequence.pk)
        return sending.BatchResult(stop=True)
    token = token or journal.begin()
    rows, skipped = claim(step, limit=sending.batch_limit(backend), lease_seconds=sending.knob("SEND_LEASE_SECONDS"),
                          token=token)
    result = sending.BatchResult(claimed=len(rows) + skipped, counts=Counter({Message.SKIPPED: skipped}))
    if not rows:
        journal.discard(token)
        return result
    try:
        job = job_for(step)
    except NotSendable as exc:
        ledger.release([r["pk"] for r in rows], token)
        journal.discard(token)
        from .sequences import pause

        pause(sequence, reason=f"Step {step.position} “{step.subject}”: {exc}")
        return sending.BatchResult(claimed=len(rows), stop=True)
    batch = StepBatch(step, backend, rows, token)
    try:
        batch.run(job)
    finally:
        result.counts.update(batch.counts)
        result.stop = batch.stop
    stats.add_sent(stats.STEP, step.pk, result.counts[Message.SENT])  # the step's hourly figures
    return result


# --- Slots and bells ------------------------------------------------------------------------------------


def _slot_key(step_id, slot):
    return f"campaigns:step-slot:{step_id}:{slot}"


def run_slot(step_id, slot, *, budget=None):
    """Send batches of a step for up to `budget` seconds; True when work remains."""
    return sending.run_slice(_slot_key(step_id, slot), lambda: send_batch(step_id), budget=budget,
                             label=f"step {step_id}, slot {slot}")


def ring(step_id):
    """Ring a bell for every free slot of a step (after the transaction commits)."""
    from .tasks import send_step_slot

    for slot in range(sending.knob("SEND_CONCURRENCY")):
        if cache.add(_slot_key(step_id, slot), time.time(), timeout=sending.knob("SEND_SLOT_TTL")):
            transaction.on_commit(lambda s=slot: send_step_slot.delay(step_id, s))


def ring_due(now=None):
    """Ring the steps of running sequences that have due mail (retries, mail held by a pause)."""
    now = now or timezone.now()
    due = Message.objects.filter(status__in=Message.CLAIMABLE, next_attempt_at__lte=now)
    steps = Step.objects.filter(sequence__status=Sequence.ACTIVE).values_list("pk", flat=True)
    rung = [pk for pk in steps if due.filter(step_id=pk).exists()]
    for step_id in rung:
        ring(step_id)
    return rung
