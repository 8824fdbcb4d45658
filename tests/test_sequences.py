"""Sequences: who enters, when each step is queued, exits, re-entry and editing a running sequence.

The scheduler runs in-process against real Postgres with an injected clock (`now`).
"""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from campaigns import scheduler, sequences
from campaigns.models import Enrollment, Message, Sequence, Step
from lists import services as lists
from lists.models import Subscriber, Subscription, Suppression, Tag
from tests.factories import MailingListFactory
from tests.sequence_helpers import T0, Clock, build, ledger_rows, people, run

pytestmark = pytest.mark.django_db
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


@pytest.fixture(autouse=True)
def clock(tmp_path, monkeypatch):
    """Services (enroll, remove, editing steps) read the scheduler's clock; it starts at T0."""
    path = tmp_path / "clock"
    monkeypatch.setenv("SCHEDULER_CLOCK_FILE", str(path))
    found = Clock(path)
    found.set(T0)
    return found


def enrollment_of(subscriber, sequence):
    return Enrollment.objects.get(subscriber=subscriber, sequence=sequence)


def mark_sent(sequence):
    """What the pipeline does to queued rows; these tests look at the scheduler only."""
    Message.objects.filter(step__sequence=sequence, status=Message.QUEUED).update(status=Message.SENT)


def walk(sequence, *times):
    """Scheduler passes at each time (the services' clock follows), queued mail 'sent' in between."""
    for at in times:
        Clock(Path(os.environ["SCHEDULER_CLOCK_FILE"])).set(at)
        run(at, sequence)
        mark_sent(sequence)


# --- Entering ------------------------------------------------------------------------------------------


def test_discovery_enrolls_every_confirmed_subscriber_exactly_once():
    # given
    sequence = build()
    readers = people(sequence.mailing_list, 3)
    lists.unsubscribe(readers[2], sequence.mailing_list)
    # when two passes run
    first = run(T0, sequence)
    second = run(T0, sequence)
    # then
    assert first.enrolled == 2 and second.enrolled == 0
    assert sorted(Enrollment.objects.values_list("subscriber__email", flat=True)) == [
        "reader0@example.org", "reader1@example.org"]


def test_first_pass_enrolls_and_queues_the_welcome_mail_at_once():
    sequence = build(steps=((0, "days"), (2, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    # when
    result = run(T0, sequence)
    # then
    assert (result.enrolled, result.queued) == (1, 1)
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "queued")]
    enrollment = enrollment_of(reader, sequence)
    assert (enrollment.position, enrollment.last_step_at, enrollment.next_step_at) == (1, T0, T0 + 2 * DAY)
    assert enrollment.next_step.position == 2


def test_only_new_subscribers_enter_when_existing_ones_are_left_out():
    # given a sequence switched on at T0 for new subscribers only
    sequence = build(enroll_existing=False)
    Sequence.objects.filter(pk=sequence.pk).update(activated_at=T0)
    sequence.refresh_from_db()
    people(sequence.mailing_list, 1, prefix="before", confirmed_at=T0 - HOUR)
    people(sequence.mailing_list, 1, prefix="after", confirmed_at=T0 + HOUR)
    # when
    run(T0 + 2 * HOUR, sequence)
    # then
    assert list(Enrollment.objects.values_list("subscriber__email", flat=True)) == ["after0@example.org"]


def test_unconfirmed_suppressed_and_blocklisted_subscribers_do_not_enter():
    sequence = build()
    readers = people(sequence.mailing_list, 4)
    Subscription.objects.filter(subscriber=readers[0]).update(status=Subscription.UNCONFIRMED)
    Suppression.objects.create(email="reader1@example.org", reason=Suppression.COMPLAINT)
    Subscriber.objects.filter(pk=readers[2].pk).update(status=Subscriber.BLOCKLISTED)
    run(T0, sequence)
    assert list(Enrollment.objects.values_list("subscriber__email", flat=True)) == ["reader3@example.org"]


def test_a_segment_limits_who_enters():
    from lists.models import Segment

    segment = Segment.objects.create(name="Pro", conditions=[{"field": "attributes.plan", "op": "is", "value": "pro"}])
    sequence = build(segment=segment)
    readers = people(sequence.mailing_list, 2)
    Subscriber.objects.filter(pk=readers[1].pk).update(attributes={"plan": "pro"})
    run(T0, sequence)
    assert list(Enrollment.objects.values_list("subscriber__email", flat=True)) == ["reader1@example.org"]


def test_discovery_of_the_whole_audience_runs_at_most_once_per_interval(settings):
    settings.SEQUENCE_DISCOVERY_SECONDS = 60
    sequence = build()
    people(sequence.mailing_list, 1, prefix="early")
    assert scheduler.run(now=T0).enrolled == 1
    people(sequence.mailing_list, 1, prefix="late")
    assert scheduler.run(now=T0 + timedelta(seconds=30)).enrolled == 0
    assert scheduler.run(now=T0 + timedelta(seconds=61)).enrolled == 1


def test_enroll_subscriber_enrolls_one_person_at_once_and_queues_the_welcome():
    # given a running sequence whose periodic discovery just ran
    sequence = build()
    run(T0, sequence)
    reader = people(sequence.mailing_list, 1)[0]
    # when the hook for a fresh signup runs
    entered = sequences.enroll_subscriber(reader.pk, now=T0 + timedelta(seconds=5))
    # then
    assert entered == 1
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "queued")]


def test_tag_trigger_enrolls_those_tagged_after_it_was_switched_on():
    mailing_list = MailingListFactory()
    readers = people(mailing_list, 3)
    lists.tag(readers[0], "vip")
    sequence = build(mailing_list=mailing_list, activate=False, trigger=Sequence.ON_TAG,
                     trigger_tag=Tag.objects.get(name="vip"))
    sequences.enable(sequence, enroll_existing=False)
    lists.tag(readers[1], "vip")
    run(T0, sequence)
    assert list(Enrollment.objects.values_list("subscriber__email", "source")) == [("reader1@example.org", "tag")]


def test_tag_trigger_with_existing_subscribers_enrolls_everyone_tagged():
    mailing_list = MailingListFactory()
    readers = people(mailing_list, 2)
    lists.tag(readers[0], "vip")
    sequence = build(mailing_list=mailing_list, activate=False, trigger=Sequence.ON_TAG,
                     trigger_tag=Tag.objects.get(name="vip"))
    sequences.enable(sequence, enroll_existing=True)
    run(T0, sequence)
    assert list(Enrollment.objects.values_list("subscriber__email", flat=True)) == ["reader0@example.org"]


def test_api_trigger_enrolls_only_through_the_service():
    sequence = build(trigger=Sequence.ON_API)
    readers = people(sequence.mailing_list, 2)
    run(T0, sequence)
    assert Enrollment.objects.count() == 0
    enrollment, entered = sequences.enroll(sequence, readers[0])
    assert entered is True and enrollment.source == "api"
    assert Enrollment.objects.count() == 1


def test_enroll_refuses_who_is_not_confirmed_on_the_list_and_changes_nothing():
    sequence = build(trigger=Sequence.ON_API)
    stranger = people(MailingListFactory(name="Other"), 1, prefix="stranger")[0]
    with pytest.raises(sequences.SequenceError, match="not a confirmed subscriber of “Newsletter”"):
        sequences.enroll(sequence, stranger)
    assert Enrollment.objects.count() == 0


def test_enroll_into_a_draft_is_refused():
    sequence = build(activate=False, trigger=Sequence.ON_API)
    reader = people(sequence.mailing_list, 1)[0]
    with pytest.raises(sequences.SequenceError, match="Switch the sequence on"):
        sequences.enroll(sequence, reader)


# --- Steps over time --------------------------------------------------------------------------------------


def test_steps_are_queued_after_their_delays_and_the_enrollment_finishes():
    sequence = build(steps=((0, "days"), (2, "days"), (3, "hours")))
    reader = people(sequence.mailing_list, 1)[0]
    # when time passes in hourly ticks over three days
    walk(sequence, *[T0 + n * HOUR for n in range(0, 72)])
    # then every step went once, each at its time
    rows = Message.objects.filter(step__sequence=sequence).order_by("step__position")
    assert [(m.step.position, m.next_attempt_at) for m in rows] == [
        (1, T0), (2, T0 + 2 * DAY), (3, T0 + 2 * DAY + 3 * HOUR)]
    enrollment = enrollment_of(reader, sequence)
    assert (enrollment.status, enrollment.position, enrollment.ended_at) == (
        Enrollment.FINISHED, 3, T0 + 2 * DAY + 3 * HOUR)


def test_a_step_due_outside_its_window_waits_for_the_window(settings):
    settings.TIME_ZONE = "UTC"
    sequence = build(steps=((0, "days"),))
    Step.objects.filter(sequence=sequence).update(window_start_hour=9, window_end_hour=11)
    people(sequence.mailing_list, 1)
    run(T0, sequence)  # 08:00 UTC: enrolled, planned for 09:00
    assert Message.objects.count() == 0
    run(T0 + HOUR, sequence)
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "queued")]


def test_two_schedulers_at_the_same_moment_queue_each_step_once():
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 50)
    run(T0, sequence)
    run(T0, sequence)
    assert Message.objects.count() == 50
    assert set(Message.objects.values_list("step__position", flat=True)) == {1}


def test_a_pass_that_crashes_before_its_commit_leaves_nothing_behind():
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 5)
    walk(sequence, T0)  # step 1 for everyone
    # when the pass for step 2 dies after writing, before its commit
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.run_batch(scheduler.Plan(sequence, T0 + DAY), 100)
        raise RuntimeError("the scheduler process died here")
    # then nothing was queued and nobody moved; the next pass does it once
    assert Message.objects.filter(step__position=2).count() == 0
    assert set(Enrollment.objects.values_list("position", "next_step_at")) == {(1, T0 + DAY)}
    run(T0 + DAY, sequence)
    assert Message.objects.filter(step__position=2).count() == 5


def test_a_step_repeated_by_a_lost_update_is_not_queued_twice():
    sequence = build(steps=((0, "days"), (1, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)
    before = enrollment_of(reader, sequence)
    # given the enrollment is put back as if the pass had never advanced it
    Enrollment.objects.filter(pk=before.pk).update(position=0, last_step=None, next_step=sequence.steps.first(),
                                                   next_step_at=T0)
    # when
    run(T0 + timedelta(minutes=1), sequence)
    # then the ledger keeps one row and the enrollment moves on
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "queued")]
    assert enrollment_of(reader, sequence).position == 1


def test_after_downtime_a_due_step_goes_out_once_late_and_the_next_delay_counts_from_then():
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")), skip_after_days=3)
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    # when the scheduler was down for two days
    walk(sequence, T0 + 2 * DAY + HOUR)
    # then step 2 went once, late; step 3 waits a full day from then
    assert [(m.step.position, m.status) for m in Message.objects.order_by("pk")] == [(1, "sent"), (2, "sent")]
    assert enrollment_of(reader, sequence).next_step_at == T0 + 3 * DAY + HOUR


def test_the_next_step_waits_while_the_previous_message_is_still_pending():
    sequence = build(steps=((0, "days"), (1, "hours")))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)  # step 1 queued, not sent
    result = run(T0 + 2 * HOUR, sequence)
    assert (result.held, result.queued) == (1, 0)
    assert enrollment_of(reader, sequence).next_step_at == T0 + 2 * HOUR + scheduler.HOLD_RECHECK
    mark_sent(sequence)
    run(T0 + 3 * HOUR, sequence)
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "sent"), ("reader0@example.org", 2, 1, "queued")]


# --- Exits ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("leave, reason", [
    (lambda r, l: lists.unsubscribe(r, l), Enrollment.UNSUBSCRIBED),
    (lambda r, l: lists.suppress(r.email, reason="complaint"), Enrollment.SUPPRESSED),
    (lambda r, l: Subscriber.objects.filter(pk=r.pk).update(status=Subscriber.BLOCKLISTED), Enrollment.BLOCKLISTED),
])
def test_leaving_between_two_steps_stops_the_later_steps(leave, reason):
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    leave(reader, sequence.mailing_list)
    walk(sequence, T0 + DAY, T0 + 2 * DAY)
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "sent")]
    enrollment = enrollment_of(reader, sequence)
    assert (enrollment.status, enrollment.exit_reason, enrollment.ended_at) == (Enrollment.EXITED, reason, T0 + DAY)


def test_the_exit_tag_takes_a_subscriber_out():
    customer = Tag.objects.create(name="customer")
    sequence = build(steps=((0, "days"), (1, "days")), exit_tag=customer)
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    lists.tag(reader, "customer")
    walk(sequence, T0 + DAY)
    enrollment = enrollment_of(reader, sequence)
    assert (enrollment.status, enrollment.exit_reason) == (Enrollment.EXITED, Enrollment.EXIT_TAG)
    assert len(ledger_rows(sequence)) == 1


def test_remove_takes_a_subscriber_out_and_cancels_their_queued_mail():
    sequence = build(steps=((0, "days"), (1, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)
    assert sequences.remove(sequence, reader) is True
    assert sequences.remove(sequence, reader) is False
    assert ledger_rows(sequence) == [("reader0@example.org", 1, 1, "cancelled")]
    enrollment = enrollment_of(reader, sequence)
    assert (enrollment.status, enrollment.exit_reason, enrollment.next_step_at) == (
        Enrollment.EXITED, Enrollment.REMOVED, None)


# --- Re-entry ---------------------------------------------------------------------------------------------


def _resubscribe(reader, mailing_list, at):
    Subscription.objects.filter(subscriber=reader, mailing_list=mailing_list).update(
        status=Subscription.CONFIRMED, confirmed_at=at)


@pytest.mark.parametrize("rule, entries", [
    (Sequence.NEVER, [1]), (Sequence.AFTER_FINISHING, [1, 2]), (Sequence.ALWAYS, [1, 2]),
])
def test_resubscribing_after_leaving_follows_the_reentry_rule(rule, entries):
    sequence = build(steps=((0, "days"), (1, "days")), reentry=rule)
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    lists.unsubscribe(reader, sequence.mailing_list)
    walk(sequence, T0 + DAY)  # exits
    _resubscribe(reader, sequence.mailing_list, T0 + 2 * DAY)
    walk(sequence, T0 + 2 * DAY + HOUR)
    assert [entry for _, _, entry, _ in ledger_rows(sequence)] == entries


def test_always_restarts_an_active_subscriber_from_the_first_step():
    sequence = build(steps=((0, "days"), (5, "days")), reentry=Sequence.ALWAYS, trigger=Sequence.ON_API)
    reader = people(sequence.mailing_list, 1)[0]
    sequences.enroll(sequence, reader)
    walk(sequence, T0)
    enrollment, entered = sequences.enroll(sequence, reader)
    assert entered is True and enrollment.entry == 2
    walk(sequence, T0 + DAY)
    assert [(p, entry) for _, p, entry, _ in ledger_rows(sequence)] == [(1, 1), (1, 2)]


def test_after_finishing_keeps_an_active_subscriber_where_they_are():
    sequence = build(steps=((0, "days"), (5, "days")), reentry=Sequence.AFTER_FINISHING, trigger=Sequence.ON_API)
    reader = people(sequence.mailing_list, 1)[0]
    sequences.enroll(sequence, reader)
    enrollment, entered = sequences.enroll(sequence, reader)
    assert (entered, enrollment.entry) == (False, 1)


def test_a_new_tag_row_lets_a_finished_subscriber_in_again():
    mailing_list = MailingListFactory()
    reader = people(mailing_list, 1)[0]
    vip = Tag.objects.create(name="vip")
    sequence = build(mailing_list=mailing_list, steps=((0, "days"),), trigger=Sequence.ON_TAG, trigger_tag=vip,
                     reentry=Sequence.AFTER_FINISHING)
    lists.tag(reader, "vip")
    walk(sequence, T0)
    assert enrollment_of(reader, sequence).status == Enrollment.FINISHED
    walk(sequence, T0 + DAY)  # still tagged: nothing new
    lists.untag(reader, "vip")
    lists.tag(reader, "vip")
    walk(sequence, T0 + 2 * DAY)
    assert [entry for _, _, entry, _ in ledger_rows(sequence)] == [1, 2]


# --- Editing a running sequence ---------------------------------------------------------------------------


def test_an_appended_step_reaches_those_in_it_and_those_who_just_finished():
    sequence = build(steps=((0, "days"), (1, "days")), skip_after_days=3)
    early = people(sequence.mailing_list, 1, prefix="early")[0]
    walk(sequence, T0 - 10 * DAY, T0 - 9 * DAY)  # early finished long ago
    recent = people(sequence.mailing_list, 1, prefix="recent", confirmed_at=T0 - 2 * DAY)[0]
    walk(sequence, T0 - 2 * DAY, T0 - DAY)  # recent finished yesterday
    current = people(sequence.mailing_list, 1, prefix="current", confirmed_at=T0)[0]
    walk(sequence, T0)  # current got step 1
    # when a third step is appended
    sequences.add_step(sequence, subject="Step 3", body=ledger_body(), delay_amount=1, delay_unit="days")
    walk(sequence, *[T0 + n * HOUR for n in range(1, 49)])
    # then
    third = {email for email, position, _, status in ledger_rows(sequence) if position == 3 and status == "sent"}
    assert third == {recent.email, current.email}
    assert enrollment_of(early, sequence).status == Enrollment.FINISHED


def ledger_body():
    from tests.sequence_helpers import step_body

    return step_body(3)


def test_an_inserted_step_is_sent_before_the_later_ones():
    sequence = build(steps=((0, "days"), (2, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    inserted = sequences.add_step(sequence, subject="Between", body=ledger_body(), delay_amount=1,
                                  delay_unit="days", position=2)
    assert list(sequence.steps.values_list("subject", "position")) == [
        ("Step 1 for {{ subscriber.first_name }}", 1), ("Between", 2), ("Step 2 for {{ subscriber.first_name }}", 3)]
    walk(sequence, T0 + HOUR, T0 + DAY, T0 + 3 * DAY)
    assert [(p, s) for _, p, _, s in ledger_rows(sequence)] == [(1, "sent"), (2, "sent"), (3, "sent")]
    assert Message.objects.get(step=inserted).next_attempt_at == T0 + DAY
    assert enrollment_of(reader, sequence).status == Enrollment.FINISHED


@pytest.mark.parametrize("change", ["pause", "delete"])
def test_a_paused_or_deleted_step_is_skipped_without_stalling(change):
    sequence = build(steps=((0, "days"), (1, "days"), (2, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    second = sequence.steps.get(position=2)
    if change == "pause":
        sequences.set_step_active(second, False)
    else:
        sequences.delete_step(second)
    # then the third step comes two days after the first, not after a missing second
    walk(sequence, T0 + DAY, T0 + 2 * DAY)
    assert [p for _, p, _, _ in ledger_rows(sequence)] == [1, 3]
    assert Message.objects.get(step__position=3).next_attempt_at == T0 + 2 * DAY
    assert enrollment_of(reader, sequence).status == Enrollment.FINISHED


def test_a_changed_delay_applies_to_steps_not_yet_scheduled():
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)  # step 2 scheduled for T0 + 1 day
    for step in sequence.steps.filter(position__in=[2, 3]):
        sequences.update_step(step, delay_amount=3)
    assert enrollment_of(reader, sequence).next_step_at == T0 + DAY
    walk(sequence, T0 + DAY, T0 + 3 * DAY, T0 + 4 * DAY)
    times = list(Message.objects.order_by("step__position").values_list("next_attempt_at", flat=True))
    assert times == [T0, T0 + DAY, T0 + 4 * DAY]


def test_moving_a_step_keeps_everyone_after_the_step_they_last_got():
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")))
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0, T0 + DAY)  # got steps 1 and 2
    third = sequence.steps.get(position=3)
    sequences.move_step(third, 1)
    # then the old third step is now first: passed over, never sent; step "2" stays the last one got
    assert list(sequence.steps.values_list("subject", flat=True)) == [
        "Step 3 for {{ subscriber.first_name }}", "Step 1 for {{ subscriber.first_name }}",
        "Step 2 for {{ subscriber.first_name }}"]
    assert enrollment_of(reader, sequence).position == 3
    walk(sequence, T0 + 3 * DAY)
    assert enrollment_of(reader, sequence).status == Enrollment.FINISHED
    assert len(ledger_rows(sequence)) == 2


def test_pausing_the_sequence_holds_everyone_and_resuming_skips_stale_steps():
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")), skip_after_days=2)
    reader = people(sequence.mailing_list, 1)[0]
    walk(sequence, T0)
    sequences.pause(sequence)
    walk(sequence, T0 + 5 * DAY)
    assert len(ledger_rows(sequence)) == 1
    # when resumed after five days
    Sequence.objects.filter(pk=sequence.pk).update(status=Sequence.ACTIVE)
    walk(sequence, T0 + 5 * DAY + HOUR)
    # then the stale step 2 is recorded as skipped and step 3 comes a day later
    skipped = Message.objects.get(step__position=2)
    assert skipped.status == "skipped" and "more than 2 day(s) earlier" in skipped.last_response
    assert enrollment_of(reader, sequence).next_step_at == T0 + 6 * DAY + HOUR


def test_enable_refuses_a_sequence_without_steps_and_says_why():
    sequence = build(steps=(), activate=False)
    with pytest.raises(sequences.SequenceError, match="Add at least one step"):
        sequences.enable(sequence)
    sequence.refresh_from_db()
    assert sequence.status == Sequence.DRAFT


def test_enable_twice_says_it_is_already_running():
    sequence = build()
    with pytest.raises(sequences.SequenceError, match="already running"):
        sequences.enable(sequence)


def test_a_tag_trigger_needs_its_tag():
    with pytest.raises(ValidationError) as caught:
        build(activate=False, trigger=Sequence.ON_TAG)
    assert caught.value.message_dict == {"trigger_tag": ["Choose the tag that starts this sequence."]}


def test_a_step_with_a_broken_template_is_refused_with_the_line():
    sequence = build(steps=(), activate=False)
    with pytest.raises(ValidationError) as caught:
        sequences.add_step(sequence, subject="Hi", body="<p>{% if %}</p>")
    assert "body" in caught.value.message_dict
    assert Step.objects.count() == 0


def test_delete_sequence_cancels_its_queued_mail_and_keeps_the_ledger():
    sequence = build()
    people(sequence.mailing_list, 2)
    run(T0, sequence)
    sequences.delete_sequence(sequence)
    assert list(Message.objects.values_list("status", "step")) == [("cancelled", None), ("cancelled", None)]


# --- Dates ------------------------------------------------------------------------------------------------


def test_a_yearly_birthday_step_goes_every_year_on_the_day():
    sequence = build(steps=(), activate=False)
    sequences.add_step(sequence, subject="Happy birthday", body=ledger_body(), timing="date",
                       date_attribute="birthday", window_start_hour=9, window_end_hour=10)
    sequences.enable(sequence)
    reader = people(sequence.mailing_list, 1, time_zone="Europe/Berlin")[0]
    Subscriber.objects.filter(pk=reader.pk).update(attributes={"birthday": "1990-03-10"})
    no_date = people(sequence.mailing_list, 1, prefix="nodate")[0]
    # when time passes over two birthdays
    times = [T0 + n * 6 * HOUR for n in range(0, 4 * 400)]
    walk(sequence, *times[:60])  # to mid-March 2025
    walk(sequence, *[t for t in times if t.year == 2026 and t.month == 3 and t.day in (9, 10, 11)])
    # then once a year at 09:00 Berlin time (08:00 UTC), one entry each
    rows = list(Message.objects.filter(subscriber=reader).order_by("pk").values_list("entry", "next_attempt_at"))
    assert [(entry, at.isoformat()) for entry, at in rows] == [
        (1, "2025-03-10T08:00:00+00:00"), (2, "2026-03-10T08:00:00+00:00")]
    assert Enrollment.objects.get(subscriber=no_date).status == Enrollment.FINISHED


@pytest.mark.django_db(transaction=True)
def test_a_large_backlog_is_split_between_connections_and_each_step_queued_once():
    # given 60 due enrollments, batches of 5 and two workers (so the pass splits in two)
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("parallel parts need Postgres (SQLite allows one writer)")
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 60)
    run(T0, sequence)
    mark_sent(sequence)
    assert len(scheduler._split(sequence, T0 + DAY, 2, 5)) == 2
    # when
    result = scheduler.run_sequence(sequence, now=T0 + DAY, batch_size=5, workers=2)
    # then
    assert (result.queued, result.claimed) == (60, 60)
    assert Message.objects.filter(step__position=2).count() == 60
    assert scheduler._split(sequence, T0 + DAY, 2, 5) == []  # nothing due any more
