"""
Sequence services: build and edit sequences and their steps, switch them on,
pause and resume, enroll and remove subscribers, and discover who enters.
Views, the API, tasks and commands call these; the scheduler (campaigns.scheduler)
does the sending side.

Rules for editing a running sequence (the scheduler applies them, see
Enrollment's docstring):

- a step added anywhere reaches everyone who has not passed its place yet;
  appended at the end, it also reaches those who finished recently enough that
  it would not be stale for them (see `_continue_finished`);
- a paused or deleted step is skipped: whoever waits for it is planned again
  for the next step, counting its delay from their previous step;
- a changed delay applies to steps not yet scheduled (a subscriber already
  waiting keeps their time);
- after moving steps, each subscriber goes on after the step they last got;
  the ledger's unique (subscriber, step, entry) key never lets a step they
  already got go out twice;
- pausing the sequence holds everyone in place (queued mail too); resuming
  skips steps that became older than `skip_after_days` instead of sending a burst.
"""

import logging
from datetime import timedelta

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Case, Exists, F, IntegerField, Max, OuterRef, Q, Subquery, Value, When
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from lists.models import Subscriber, Subscription, Suppression

from . import scheduling
from .scheduler import clock
from .models import Enrollment, Message, Sequence, Step

log = logging.getLogger(__name__)

TagRow = Subscriber.tags.through
SEQUENCE_FIELDS = (
    "name", "mailing_list", "segment", "sender", "backend", "trigger", "trigger_tag", "enroll_existing",
    "exit_tag", "reentry", "skip_after_days", "track_opens", "track_clicks",
)
STEP_FIELDS = (
    "name", "timing", "delay_amount", "delay_unit", "window_start_hour", "window_end_hour", "window_weekdays",
    "date_attribute", "date_offset_days", "yearly", "subject", "body", "body_format", "text_body", "layout",
    "is_active",
)


class SequenceError(Exception):
    """An action that cannot be done; the message says why and what to do."""


# --- Building ------------------------------------------------------------------------------------


def create_sequence(*, name, mailing_list, sender, created_by=None, **options):
    """A new draft sequence; raises ValidationError (per field) on bad settings."""
    unknown = set(options) - set(SEQUENCE_FIELDS)
    if unknown:
        raise TypeError(f"Unknown sequence field(s): {', '.join(sorted(unknown))}")
    sequence = Sequence(name=name, mailing_list=mailing_list, sender=sender, created_by=created_by, **options)
    _check_sequence(sequence)
    sequence.save()
    return sequence


def update_sequence(sequence, **changes):
    """Change settings; a running sequence keeps running with them."""
    _apply(sequence, changes, SEQUENCE_FIELDS)
    _check_sequence(sequence)
    sequence.save()
    return sequence


def _apply(obj, changes, allowed):
    unknown = set(changes) - set(allowed)
    if unknown:
        raise TypeError(f"Unknown field(s): {', '.join(sorted(unknown))}")
    for field, value in changes.items():
        setattr(obj, field, value)


def _check_sequence(sequence):
    sequence.full_clean(exclude=["created_by"])
    if sequence.trigger == Sequence.ON_TAG and not sequence.trigger_tag_id:
        raise ValidationError({"trigger_tag": "Choose the tag that starts this sequence."})
    if sequence.exit_tag_id and sequence.exit_tag_id == sequence.trigger_tag_id:
        raise ValidationError({"exit_tag": "The exit tag cannot be the tag that starts the sequence."})


def add_step(sequence, *, subject, body, position=None, **options):
    """A new step, at the end or before the step now at `position`; returns it.

    Raises ValidationError when the content does not parse or the timing cannot be met.
    """
    step = Step(sequence=sequence, subject=subject, body=body, position=0)
    _apply(step, options, STEP_FIELDS)
    step.full_clean(exclude=["position"])
    with transaction.atomic():
        steps = list(Sequence.objects.select_for_update().get(pk=sequence.pk).steps.order_by("position", "pk"))
        at = len(steps) if position is None else max(0, min(position - 1, len(steps)))
        step.position = (steps[-1].position + 1) if at == len(steps) and steps else at + 1
        step.save()
        if at < len(steps):
            _renumber(sequence, steps[:at] + [step] + steps[at:])
            _replan(sequence, position__lt=step.position)
        elif sequence.status != Sequence.DRAFT:
            _continue_finished(sequence, step)
    return step


def update_step(step, **changes):
    """Change a step's content or timing (see the module's rules for running sequences)."""
    _apply(step, changes, STEP_FIELDS)
    step.full_clean()
    step.save()
    return step


def set_step_active(step, is_active):
    """Pause (skip) or resume a step; nobody waits for a paused step."""
    with transaction.atomic():
        Step.objects.filter(pk=step.pk).update(is_active=is_active, updated_at=timezone.now())
        step.is_active = is_active
        if is_active:
            _replan(step.sequence, position__lt=step.position)
        else:
            _replan(step.sequence, next_step=step)
    return step


def delete_step(step):
    """Delete a step; its mail not yet sent is cancelled, what was sent stays in the ledger."""
    with transaction.atomic():
        # First the step's lock: a scheduler batch writing its messages holds it (FOR KEY SHARE)
        # until it commits, so the cancel below sees them; later batches find the step gone.
        list(Step.objects.select_for_update().filter(pk=step.pk).values_list("pk"))
        cancel_pending(Message.objects.filter(step=step))
        _replan(step.sequence, next_step=step)
        step.delete()


def move_step(step, to_position):
    """Move a step to the 1-based `to_position`; everyone goes on after the step they last got."""
    with transaction.atomic():
        steps = [s for s in Sequence.objects.select_for_update().get(pk=step.sequence_id).steps.order_by(
            "position", "pk") if s.pk != step.pk]
        at = max(0, min(to_position - 1, len(steps)))
        _renumber(step.sequence, steps[:at] + [step] + steps[at:])
        _replan(step.sequence)


def _renumber(sequence, ordered):
    """Give the steps positions 1…n and keep every enrollment after the step it last got."""
    old = {s.pk: s.position for s in ordered}
    for number, s in enumerate(ordered, start=1):
        if s.position != number or old[s.pk] != number:
            Step.objects.filter(pk=s.pk).update(position=number)
        s.position = number
    enrollments = Enrollment.objects.filter(sequence=sequence)
    enrollments.filter(last_step__isnull=False).update(
        position=Subquery(Step.objects.filter(pk=OuterRef("last_step_id")).values("position")[:1])
    )
    # Without a last step (none sent yet, or it was deleted): map the old number to the new one.
    remap = [When(position=old[s.pk], then=Value(s.position)) for s in ordered if old[s.pk] != s.position]
    if remap:
        enrollments.filter(last_step__isnull=True, position__gt=0).update(
            position=Case(*remap, default=F("position"), output_field=IntegerField())
        )


def _replan(sequence, **which):
    """Have the scheduler plan these active enrollments again at its next pass, from their
    previous step (a step was inserted, moved, paused, resumed or deleted)."""
    return Enrollment.objects.filter(sequence=sequence, status=Enrollment.ACTIVE, **which).update(
        next_step=None, next_step_at=clock()
    )


def _continue_finished(sequence, step):
    """Those who finished recently enough that the new last step is not stale for them get it too."""
    now = clock()
    finished = Enrollment.objects.filter(sequence=sequence, status=Enrollment.FINISHED)
    if sequence.skip_after_days:
        nominal = timedelta(seconds=scheduling.delay_seconds(step.delay_amount, step.delay_unit))
        finished = finished.filter(last_step_at__gte=now - timedelta(days=sequence.skip_after_days) - nominal)
    return finished.update(status=Enrollment.ACTIVE, next_step=None, next_step_at=now, ended_at=None)


def delete_sequence(sequence):
    """Delete a sequence with its steps and enrollments; its unsent mail is cancelled first."""
    with transaction.atomic():
        list(Step.objects.select_for_update().filter(sequence=sequence).values_list("pk"))  # see delete_step
        cancel_pending(Message.objects.filter(step__sequence=sequence))
        sequence.delete()


def cancel_pending(messages):
    return messages.filter(status__in=Message.CLAIMABLE).update(
        status=Message.CANCELLED, last_response="Cancelled: the step or sequence was deleted.", updated_at=timezone.now()
    )


# --- Switching on and off ---------------------------------------------------------------------


def problems(sequence):
    """Everything that stops the sequence from running, in plain words (empty: ready)."""
    found = []
    if not sequence.steps.filter(is_active=True).exists():
        found.append("Add at least one step (or resume a paused one).")
    if not " ".join(sequence.sender.postal_address.split()):
        found.append("The sender has no postal address; add one in the sender's settings.")
    if sequence.trigger == Sequence.ON_TAG and not sequence.trigger_tag_id:
        found.append("Choose the tag that starts this sequence.")
    if sequence.mailing_list.is_archived:
        found.append("The list is archived; choose another list.")
    return found


def enable(sequence, *, enroll_existing=None):
    """Switch a draft or paused sequence on. The first time, `enroll_existing` (or the
    sequence's setting) decides whether those already subscribed or tagged enter too."""
    blockers = problems(sequence)
    if blockers:
        raise SequenceError(" ".join(blockers))
    now = timezone.now()
    with transaction.atomic():
        if enroll_existing is not None and sequence.status == Sequence.DRAFT:
            Sequence.objects.filter(pk=sequence.pk, status=Sequence.DRAFT).update(enroll_existing=enroll_existing)
        first = Sequence.objects.filter(pk=sequence.pk, status=Sequence.DRAFT).update(
            status=Sequence.ACTIVE, activated_at=now, tag_watermark=_tag_watermark(sequence), pause_reason="",
            updated_at=now,
        )
        again = first or Sequence.objects.filter(pk=sequence.pk, status=Sequence.PAUSED).update(
            status=Sequence.ACTIVE, pause_reason="", updated_at=now
        )
        if not again:
            raise SequenceError("The sequence is already running.")
        _ring_sequence(sequence.pk)
    cache.delete(RUNNING_KEY)
    sequence.refresh_from_db()
    return sequence


def _tag_watermark(sequence):
    if not sequence.trigger_tag_id:
        return 0
    return TagRow.objects.filter(tag_id=sequence.trigger_tag_id).aggregate(top=Max("id"))["top"] or 0


def pause(sequence, *, reason=""):
    """Hold everyone in place; queued mail of the sequence waits too. Idempotent."""
    Sequence.objects.filter(pk=sequence.pk, status=Sequence.ACTIVE).update(
        status=Sequence.PAUSED, pause_reason=reason[:2000], updated_at=timezone.now()
    )
    sequence.refresh_from_db()
    return sequence


def resume(sequence):
    """Go on; steps that became older than `skip_after_days` meanwhile are skipped, not sent late."""
    if sequence.status != Sequence.PAUSED:
        raise SequenceError("Only a paused sequence can be resumed.")
    return enable(sequence)


def _ring_sequence(sequence_id):
    from .tasks import schedule_sequence

    transaction.on_commit(lambda: schedule_sequence.delay(sequence_id))


# --- Enrolling by hand or through the API ------------------------------------------------------


def enroll(sequence, subscriber, *, source=Sequence.ON_API):
    """Put a subscriber into a sequence now (the API trigger). Returns (enrollment, entered).

    The subscriber must be confirmed on the sequence's list and mailable. An
    existing enrollment follows the re-entry rule: `entered` is False when the
    rule keeps them where they are.
    """
    if sequence.status == Sequence.DRAFT:
        raise SequenceError("Switch the sequence on before adding subscribers to it.")
    reason = _not_mailable(sequence, subscriber)
    if reason:
        raise SequenceError(reason)
    now = clock()
    with transaction.atomic():
        enrollment, created = Enrollment.objects.select_for_update().get_or_create(
            sequence=sequence, subscriber=subscriber, defaults=_fresh(now, source)
        )
        entered = created or _may_reenter(sequence, enrollment)
        if entered and not created:
            for field, value in _fresh(now, source).items():
                setattr(enrollment, field, value)
            enrollment.entry += 1
            enrollment.save()
        if entered:
            _ring_sequence(sequence.pk)
    return enrollment, entered


def _fresh(now, source):
    return {"status": Enrollment.ACTIVE, "exit_reason": "", "source": source, "position": 0, "last_step": None,
            "last_step_at": now, "next_step": None, "next_step_at": now, "entered_at": now, "ended_at": None}


def _may_reenter(sequence, enrollment):
    if sequence.reentry == Sequence.ALWAYS:
        return True
    return sequence.reentry == Sequence.AFTER_FINISHING and enrollment.status != Enrollment.ACTIVE


def _not_mailable(sequence, subscriber):
    if subscriber.status != Subscriber.ACTIVE:
        return "This subscriber is blocklisted."
    if Suppression.objects.filter(email=subscriber.email.lower()).exists():
        return "This address is on the suppression list."
    if not Subscription.objects.filter(
        subscriber=subscriber, mailing_list_id=sequence.mailing_list_id, status=Subscription.CONFIRMED
    ).exists():
        return f"This subscriber is not a confirmed subscriber of “{sequence.mailing_list.name}”."
    return ""


def remove(sequence, subscriber):
    """Take a subscriber out of a sequence; their queued mail from it is cancelled. Idempotent."""
    now = clock()
    with transaction.atomic():
        left = Enrollment.objects.filter(sequence=sequence, subscriber=subscriber, status=Enrollment.ACTIVE).update(
            status=Enrollment.EXITED, exit_reason=Enrollment.REMOVED, next_step=None, next_step_at=None, ended_at=now
        )
        Message.objects.filter(step__sequence=sequence, subscriber=subscriber, status__in=Message.CLAIMABLE).update(
            status=Message.CANCELLED, last_response="Cancelled: removed from the sequence.", updated_at=now
        )
    return bool(left)


# --- Discovery: who enters --------------------------------------------------------------------------


def discover(sequence, *, now, every=None, subscriber_ids=None):
    """Enroll, set-based, everyone the trigger lets in who is not enrolled yet, and start
    again those the re-entry rule lets back in. Returns how many entered.

    The whole audience is looked at most every SEQUENCE_DISCOVERY_SECONDS (one
    scheduler claims it with a conditional UPDATE); `subscriber_ids` limits it to a
    few people right after they subscribed, for a prompt welcome mail.
    """
    if sequence.trigger == Sequence.ON_API or sequence.status != Sequence.ACTIVE:
        return 0
    if subscriber_ids is None and not _claim_discovery(sequence, now, every):
        return 0
    with transaction.atomic():
        entered = _insert_entrants(sequence, now, subscriber_ids)
        entered += _reenter(sequence, now, subscriber_ids)
    return entered


def _claim_discovery(sequence, now, every):
    from django.conf import settings

    every = settings.SEQUENCE_DISCOVERY_SECONDS if every is None else every
    due = Q(discovered_at__isnull=True) | Q(discovered_at__lte=now - timedelta(seconds=every)) | Q(discovered_at__gt=now)
    return Sequence.objects.filter(due, pk=sequence.pk).update(discovered_at=now) == 1


def _mailable(people, sequence):
    """Subscribers confirmed on the sequence's list, active, not suppressed, without the exit tag."""
    suppressed = Suppression.objects.filter(email=Lower(OuterRef("email")))
    people = people.filter(~Exists(suppressed), status=Subscriber.ACTIVE)
    if sequence.exit_tag_id:
        people = people.exclude(Exists(TagRow.objects.filter(subscriber_id=OuterRef("pk"), tag_id=sequence.exit_tag_id)))
    return people


def _confirmed(sequence, *, since=None):
    confirmed = Subscription.objects.filter(
        subscriber_id=OuterRef("pk"), mailing_list_id=sequence.mailing_list_id, status=Subscription.CONFIRMED
    )
    return confirmed.filter(confirmed_at__gte=since) if since else confirmed


def entrants(sequence, subscriber_ids=None):
    """Who would enter now: (subscriber id, trigger row id) pairs, as one query."""
    only_new = not sequence.enroll_existing
    since = sequence.activated_at if only_new and sequence.trigger == Sequence.ON_SUBSCRIBE else None
    people = _mailable(Subscriber.objects.filter(Exists(_confirmed(sequence, since=since))), sequence)
    if sequence.trigger == Sequence.ON_TAG:
        rows = TagRow.objects.filter(subscriber_id=OuterRef("pk"), tag_id=sequence.trigger_tag_id)
        if only_new:
            rows = rows.filter(id__gt=sequence.tag_watermark)
        people = people.filter(Exists(rows)).annotate(ref=Subquery(rows.values("id")[:1]))
    else:
        people = people.annotate(ref=Value(0, output_field=IntegerField()))
    if sequence.segment_id:
        from lists.segments import segment_queryset

        people = people.filter(pk__in=segment_queryset(sequence.segment).values("pk"))
    if subscriber_ids is not None:
        people = people.filter(pk__in=subscriber_ids)
    enrolled = Enrollment.objects.filter(sequence_id=sequence.pk, subscriber_id=OuterRef("pk"))
    return people.filter(~Exists(enrolled)).order_by().values_list("id", "ref")


_ENROLL = (
    "INSERT INTO campaigns_enrollment (sequence_id, subscriber_id, status, exit_reason, source, entry, position,"
    " last_step_at, next_step_at, trigger_ref, entered_at)"
    " SELECT %s, entrant.id, 'active', '', %s, 1, 0, %s, %s, entrant.ref, %s FROM ({select}) entrant"
    " WHERE true ON CONFLICT (sequence_id, subscriber_id) DO NOTHING"
)


def _insert_entrants(sequence, now, subscriber_ids):
    select_sql, params = entrants(sequence, subscriber_ids).query.sql_with_params()
    at = connection.ops.adapt_datetimefield_value(now)
    with connection.cursor() as cursor:
        cursor.execute(_ENROLL.format(select=select_sql), [sequence.pk, sequence.trigger, at, at, at, *params])
        return cursor.rowcount


def _reenter(sequence, now, subscriber_ids):
    """Start again, set-based, those with a newer trigger than their last entry, if the rule allows."""
    if sequence.reentry == Sequence.NEVER:
        return 0
    enrollments = Enrollment.objects.filter(sequence=sequence)
    if sequence.reentry == Sequence.AFTER_FINISHING:
        enrollments = enrollments.exclude(status=Enrollment.ACTIVE)
    if subscriber_ids is not None:
        enrollments = enrollments.filter(subscriber_id__in=subscriber_ids)
    if sequence.trigger == Sequence.ON_TAG:
        newer = TagRow.objects.filter(subscriber_id=OuterRef("subscriber_id"), tag_id=sequence.trigger_tag_id,
                                      id__gt=OuterRef("trigger_ref"))
        ref = Coalesce(Subquery(newer.values("id")[:1]), F("trigger_ref"))
    else:
        newer = Subscription.objects.filter(
            subscriber_id=OuterRef("subscriber_id"), mailing_list_id=sequence.mailing_list_id,
            status=Subscription.CONFIRMED, confirmed_at__gt=OuterRef("entered_at"),
        )
        ref = F("trigger_ref")
    mailable = _mailable(Subscriber.objects.all(), sequence).values("pk")
    return enrollments.filter(Exists(newer), subscriber_id__in=mailable).update(
        entry=F("entry") + 1, trigger_ref=ref, status=Enrollment.ACTIVE, exit_reason="", position=0,
        last_step=None, last_step_at=now, next_step=None, next_step_at=now, entered_at=now, ended_at=None,
    )


def enroll_subscriber(subscriber_id, *, now=None):
    """Right after a subscriber joined or was tagged: enroll them wherever a running
    sequence's trigger lets them in, and queue their first step. Returns how many."""
    from .scheduler import run_sequence

    now = now or clock()
    entered = 0
    running = Sequence.objects.filter(status=Sequence.ACTIVE).exclude(trigger=Sequence.ON_API)
    for sequence in running.select_related("mailing_list"):
        joined = discover(sequence, now=now, subscriber_ids=[subscriber_id])
        if joined:
            run_sequence(sequence, now=now)
        entered += joined
    return entered


# --- Hearing of new subscriptions (lists.events) -------------------------------------------------------

RUNNING_KEY = "campaigns:sequences:on-subscribe"
PROMPT_LIMIT = 100  # more confirmations at once (a bulk action) are left to the periodic discovery


def listen_to_lists():
    """Hear of confirmed subscriptions through lists' event registry (lists never imports
    campaigns) and enroll the subscriber right after the commit, so the welcome mail goes
    within seconds; the scheduler's periodic discovery stays the safety net."""
    from lists import events

    return events.register(wants=_wants, receive=_on_confirmed)


def _wants(event):
    from lists import events

    return event == events.SUBSCRIPTION_CONFIRMED and _any_subscribe_sequence()


def _any_subscribe_sequence():
    """Whether a running sequence starts on subscribing; asked once a minute per process."""
    found = cache.get(RUNNING_KEY)
    if found is None:
        found = Sequence.objects.filter(status=Sequence.ACTIVE, trigger=Sequence.ON_SUBSCRIBE).exists()
        cache.set(RUNNING_KEY, found, 60)
    return found


def _on_confirmed(event, payloads):
    from .tasks import enroll_subscriber as ring

    subscriber_ids = sorted({payload["subscriber"]["id"] for payload in payloads})
    for subscriber_id in subscriber_ids[:PROMPT_LIMIT]:
        transaction.on_commit(lambda pk=subscriber_id: ring.delay(pk))
