"""
Broadcast services: create, check, send now or schedule, pause, resume, cancel,
progress, cost, test send. Views, the API, tasks and commands call these.

Every change of status is one conditional UPDATE (`WHERE status IN (…)`): when
"send" is clicked twice, or two API calls arrive at once, exactly one of them
moves the broadcast and the other is told it already happened.
"""

import zoneinfo
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

from django.db import transaction
from django.utils import timezone

from lists import counting

from . import backends, ledger, presend, ratelimit
from .composing import Job, NotSendable, build_raw, list_unsubscribe_headers, message_id_for
from .models import Broadcast, Message

# The earliest time zone is UTC+14: a broadcast "at 9:00 in each subscriber's time
# zone" must have its ledger written before 9:00 arrives there.
EARLIEST_OFFSET = timedelta(hours=14)


class BroadcastError(Exception):
    """A broadcast action that cannot be done; the message says why and what to do, and
    `reasons` lists each reason on its own."""

    def __init__(self, message, *, reasons=None):
        super().__init__(message)
        self.reasons = list(reasons) if reasons else [message]


def create(*, name, sender, subject, body, body_format="html", text_body="", layout=None, lists=(),
           segment=None, backend=None, track_opens=True, track_clicks=True, created_by=None):
    """A new draft; raises django ValidationError (per field) for a template that does not parse."""
    broadcast = Broadcast(
        name=name, sender=sender, subject=subject, body=body, body_format=body_format, text_body=text_body,
        layout=layout, segment=segment, backend=backend, track_opens=track_opens, track_clicks=track_clicks,
        created_by=created_by,
    )
    broadcast.full_clean()
    with transaction.atomic():
        broadcast.save()
        broadcast.lists.set(lists)
    return broadcast


def from_template(template, *, name, sender, **options):
    """A new draft with a saved template's content."""
    return create(
        name=name, sender=sender, subject=template.subject, body=template.body, body_format=template.body_format,
        text_body=template.text_body, layout=template.layout, **options,
    )


# --- Before sending ---------------------------------------------------------------------


def recipients_count(broadcast):
    """How many subscribers the broadcast would reach now (one COUNT query; seconds at a million)."""
    return ledger.audience(broadcast).count()


def audience_definition(broadcast):
    """What decides who a broadcast reaches: its lists and its segment's conditions."""
    segment = broadcast.segment if broadcast.segment_id else None
    return {"lists": sorted(broadcast.lists.values_list("pk", flat=True)),
            "segment": [segment.pk, segment.match, segment.conditions] if segment else None}


def counted_recipients(broadcast, *, fresh=False):
    """{"count", "counted_at"}: recipients_count kept a minute per audience definition, so
    that the composer, the send step and a reload count once (see lists.counting)."""
    return counting.cached("audience", audience_definition(broadcast),
                           lambda: {"count": recipients_count(broadcast)}, fresh=fresh)


def chosen_backend(broadcast):
    from .sending import pick_backend

    return pick_backend(broadcast)


def estimate_cost(broadcast, recipients=None):
    """What sending would cost at the backend's price per 1,000 (Decimal, 2 places)."""
    backend = chosen_backend(broadcast)
    count = recipients_count(broadcast) if recipients is None else recipients
    price = backend.price_per_thousand if backend else Decimal(0)
    return (price * count / 1000).quantize(Decimal("0.01"))


def problems(broadcast, checked=None):
    """Everything that stops this broadcast from being sent, in plain words (empty: ready):
    no audience, sender or backend, and the errors of the pre-send check (campaigns.presend),
    whose results may be passed in as `checked` when the caller has them already."""
    found = []
    if not broadcast.lists.exists() and not broadcast.segment_id:
        found.append("Choose at least one list or a segment to send to.")
    if not broadcast.sender.postal_address.strip():
        found.append("The sender has no postal address; add one to the sender identity.")
    if chosen_backend(broadcast) is None:
        found.append("No sending backend is active and reachable; set one up under Sending.")
    checked = presend.run(broadcast) if checked is None else checked
    found.extend(result.detail or result.title for result in presend.errors(checked))
    return found


def _require_ready(broadcast):
    found = problems(broadcast)
    if found:
        raise BroadcastError(" ".join(found), reasons=found)


# --- Status changes ----------------------------------------------------------------------------


def send_now(broadcast):
    """Start sending. Returns False when another request already started it."""
    _require_ready(broadcast)
    now = timezone.now()
    with transaction.atomic():
        moved = Broadcast.objects.filter(pk=broadcast.pk, status__in=[Broadcast.DRAFT, Broadcast.SCHEDULED]).update(
            status=Broadcast.SENDING, started_at=now, scheduled_at=None, in_subscriber_time_zone=False,
            pause_reason="", updated_at=now,
        )
        if moved:
            _ring_start(broadcast.pk)
    broadcast.refresh_from_db()
    return bool(moved)


def schedule(broadcast, when, *, in_subscriber_time_zone=False):
    """Send at `when` (aware); with `in_subscriber_time_zone`, at that wall-clock time in each
    subscriber's zone. Returns False when the broadcast is no longer a draft or scheduled."""
    if timezone.is_naive(when):
        raise BroadcastError("Give the time with its time zone.")
    if when < timezone.now() - timedelta(minutes=1) and not in_subscriber_time_zone:
        raise BroadcastError("That time has passed; pick a time in the future or send now.")
    _require_ready(broadcast)
    moved = Broadcast.objects.filter(pk=broadcast.pk, status__in=[Broadcast.DRAFT, Broadcast.SCHEDULED]).update(
        status=Broadcast.SCHEDULED, scheduled_at=when, in_subscriber_time_zone=in_subscriber_time_zone,
        updated_at=timezone.now(),
    )
    broadcast.refresh_from_db()
    return bool(moved)


def unschedule(broadcast):
    """Back to draft (editable again)."""
    moved = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.SCHEDULED).update(
        status=Broadcast.DRAFT, scheduled_at=None, updated_at=timezone.now()
    )
    broadcast.refresh_from_db()
    return bool(moved)


def pause(broadcast, *, reason=""):
    """Stop sending after the messages in flight; nothing is lost, resume continues."""
    moved = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.SENDING).update(
        status=Broadcast.PAUSED, pause_reason=reason[:2000], updated_at=timezone.now()
    )
    broadcast.refresh_from_db()
    return bool(moved)


def resume(broadcast):
    with transaction.atomic():
        moved = Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.PAUSED).update(
            status=Broadcast.SENDING, pause_reason="", updated_at=timezone.now()
        )
        if moved:
            _ring_start(broadcast.pk)
    broadcast.refresh_from_db()
    return bool(moved)


def cancel(broadcast):
    """Stop for good: messages not yet sent are cancelled (the ledger keeps them)."""
    with transaction.atomic():
        moved = Broadcast.objects.filter(
            pk=broadcast.pk, status__in=[Broadcast.DRAFT, Broadcast.SCHEDULED, Broadcast.SENDING, Broadcast.PAUSED]
        ).update(status=Broadcast.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now())
        if moved:  # counted here; batches in flight count what they send and hand back
            cancelled = Message.objects.filter(broadcast=broadcast, status__in=Message.CLAIMABLE).update(
                status=Message.CANCELLED, updated_at=timezone.now()
            )
            ledger.add_counts(broadcast.pk, {Message.CANCELLED: cancelled})
    broadcast.refresh_from_db()
    return bool(moved)


def retry_messages(message_ids):
    """Send failed or unknown messages again (the admin's "retry" action); returns how many."""
    now = timezone.now()
    with transaction.atomic():
        rows = Message.objects.filter(pk__in=message_ids, status__in=[Message.FAILED, Message.UNKNOWN])
        broadcast_ids = set(rows.values_list("broadcast_id", flat=True))
        count = rows.update(status=Message.QUEUED, next_attempt_at=now, first_attempt_at=None, updated_at=now)
        for broadcast_id in broadcast_ids - {None}:
            Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.SENT).update(
                status=Broadcast.SENDING, finished_at=None, cost=None, updated_at=now
            )
            ledger.recount(broadcast_id)
            _ring_start(broadcast_id)
    return count


def _ring_start(broadcast_id):
    from .tasks import start_broadcast

    transaction.on_commit(lambda: start_broadcast.delay(broadcast_id))


# --- Starting: the ledger is written by a worker, not by the web request ------------------------


def write_ledger(broadcast_id):
    """Write the ledger of a started broadcast unless already written (row-locked, so once)."""
    with transaction.atomic():
        broadcast = (
            Broadcast.objects.select_for_update()
            .filter(pk=broadcast_id, status=Broadcast.SENDING, fanned_out_at__isnull=True).first()
        )
        written = 0
        if broadcast is not None:
            written = ledger.fan_out(broadcast, send_at=broadcast.scheduled_at or timezone.now())
    ledger.refresh_statistics(written)
    return written


def start(broadcast_id):
    """Write the ledger if not done yet, then ring the broadcast's send slots."""
    from .sending import ring

    write_ledger(broadcast_id)
    if Broadcast.objects.filter(pk=broadcast_id, status=Broadcast.SENDING).exists():
        ring(broadcast_id)


def start_due(now=None):
    """Move due scheduled broadcasts to sending and write every missing ledger (the kick)."""
    now = now or timezone.now()
    candidates = Broadcast.objects.filter(status=Broadcast.SCHEDULED, scheduled_at__lte=now + timedelta(hours=27))
    for broadcast in candidates.only("pk", "scheduled_at", "in_subscriber_time_zone"):
        if _start_at(broadcast) <= now:
            Broadcast.objects.filter(pk=broadcast.pk, status=Broadcast.SCHEDULED).update(
                status=Broadcast.SENDING, started_at=now, updated_at=now
            )
    for broadcast_id in Broadcast.objects.filter(status=Broadcast.SENDING, fanned_out_at__isnull=True).values_list(
        "pk", flat=True
    ):
        start(broadcast_id)


def _start_at(broadcast):
    if not broadcast.in_subscriber_time_zone:
        return broadcast.scheduled_at
    wall = timezone.localtime(broadcast.scheduled_at).replace(tzinfo=None)
    return wall.replace(tzinfo=zoneinfo.ZoneInfo("UTC")) - EARLIEST_OFFSET


# --- Progress, test send -----------------------------------------------------------------------


def progress(broadcast):
    """The progress view's figures, from the counters (no counting of ledger rows)."""
    broadcast.refresh_from_db()
    return {
        "status": broadcast.status,
        "status_label": broadcast.get_status_display(),
        "recipients": broadcast.recipients_count,
        "sent": broadcast.sent_count,
        "failed": broadcast.failed_count,
        "skipped": broadcast.skipped_count,
        "unknown": broadcast.unknown_count,
        "cancelled": broadcast.cancelled_count,
        "pending": broadcast.pending_count,
        "percent": broadcast.percent,
        "pause_reason": broadcast.pause_reason,
        "is_written": broadcast.fanned_out_at is not None,
    }


def test_send(broadcast, email, *, subscriber=None):
    """Send one copy to `email` now, rendered for `subscriber` (or a sample); no ledger row.
    Returns (ok, what happened in plain words)."""
    backend = chosen_backend(broadcast)
    if backend is None:
        return False, "No sending backend is active and reachable; set one up under Sending."
    person = subscriber or SimpleNamespace(pk=None, email=email, name="", attributes={})
    try:
        _context, rendered = Job(broadcast).render(0, person)
        envelope = backends.Envelope(
            ledger_id=0, from_name=broadcast.sender.from_name, from_email=broadcast.sender.from_email,
            to_email=email, subject=f"[Test] {rendered.subject}", html=rendered.html, text=rendered.text,
            message_id=message_id_for(0), reply_to=broadcast.sender.reply_to,
            headers=list_unsubscribe_headers(_context["unsubscribe_url"]), tags=["test"],
        )
        transport = backends.transport_for(backend)
        if transport.wants_raw:
            envelope.raw = build_raw(envelope, backend)
        if ratelimit.take(ratelimit.Limits.of(backend), 1)[0] < 1:
            return False, f"{backend} is at its sending limit right now; try again in a minute."
        with transport:
            outcome = transport.send(envelope)
    except (NotSendable, backends.Unreachable, ratelimit.RateLimitUnavailable) as exc:
        return False, str(exc)
    if outcome.kind == backends.SENT:
        return True, f"Sent to {email} through {backend}."
    return False, f"{backend} did not accept it: {outcome.response}"
