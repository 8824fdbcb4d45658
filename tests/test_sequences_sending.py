"""Sequence mail through the real pipeline: a real SMTP server on loopback, real Postgres.

The scheduler runs in-process with an injected clock; the messages it queues are
sent by campaigns.step_sending (the broadcast pipeline, claimed per step).
"""

import zoneinfo
from datetime import timedelta

import pytest

from campaigns import scheduler, sequence_stats, sequences, step_sending
from campaigns.models import Enrollment, Message, Sequence, Step
from lists import services as lists
from lists.models import Subscriber, Subscription
from tests.sequence_helpers import T0, build, people, run, send_all
from tests.sending_factories import backend_for

pytestmark = pytest.mark.django_db
DAY, HOUR = timedelta(days=1), timedelta(hours=1)


def recipients(server):
    return [(m.rcpt_tos[0], m.message["Subject"]) for m in server.messages]


def test_a_queued_step_is_sent_with_the_sequence_sender_and_unsubscribe_headers(smtp_server, settings):
    # given
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 2)
    run(T0, sequence)
    # when
    result = step_sending.send_batch(sequence.steps.get().pk)
    # then
    assert result.counts["sent"] == 2
    assert sorted(recipients(smtp_server)) == [
        ("reader0@example.org", "Step 1 for Reader0"), ("reader1@example.org", "Step 1 for Reader1")]
    message = smtp_server.messages[0].message
    assert message["From"] == "Alice's Shop <news@alice.example>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["List-Unsubscribe"].startswith(f"<{settings.SITE_URL}/u/")
    assert "Step 1. Read" in message.get_body(("html",)).get_content()
    assert set(Message.objects.values_list("status", "attempts")) == {("sent", 1)}


def test_a_step_rendered_uses_the_sequence_list_in_its_context(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=(), activate=False)
    sequences.add_step(sequence, subject="From {{ list.name }}", body=(
        '<p>Hi</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>'))
    sequences.enable(sequence)
    people(sequence.mailing_list, 1)
    run(T0, sequence)
    send_all(sequence)
    assert recipients(smtp_server) == [("reader0@example.org", "From Newsletter")]


def test_an_unsubscribe_after_queueing_skips_the_message_with_the_reason(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)
    lists.unsubscribe(reader, sequence.mailing_list)
    send_all(sequence)
    assert smtp_server.messages == []
    assert list(Message.objects.values_list("status", "last_response")) == [
        ("skipped", "Skipped: the subscriber unsubscribed.")]


def test_the_unsubscribe_link_of_a_step_leaves_only_the_sequences_list(smtp_server):
    from campaigns.tracking import unsubscribe_recipient
    from tests.factories import MailingListFactory, SubscriptionFactory

    # given a reader of the sequence's list who is also on another list
    sequence = build(steps=((0, "days"),))
    reader = people(sequence.mailing_list, 1)[0]
    other = SubscriptionFactory(subscriber=reader, mailing_list=MailingListFactory(name="Offers"))
    run(T0, sequence)
    message = Message.objects.get(subscriber=reader)

    # when they use the step mail's unsubscribe link
    changed = unsubscribe_recipient(message, reason="Unsubscribe link")

    # then only the sequence's list is left
    assert changed == 1
    statuses = dict(Subscription.objects.filter(subscriber=reader).values_list("mailing_list_id", "status"))
    assert statuses == {sequence.mailing_list_id: "unsubscribed", other.mailing_list_id: "confirmed"}


def test_a_paused_sequence_holds_its_queued_mail_until_resumed(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 2)
    run(T0, sequence)
    sequences.pause(sequence)
    assert send_all(sequence) == 0
    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}
    sequences.resume(sequence)
    assert send_all(sequence) == 2
    assert len(smtp_server.messages) == 2


def test_a_step_that_cannot_render_pauses_the_sequence_with_the_reason(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 1)
    run(T0, sequence)
    # a body the editor would refuse, written straight into the database
    Step.objects.filter(sequence=sequence).update(body="<p>{{ 'x' | nosuchfilter }}</p>")
    send_all(sequence)
    sequence.refresh_from_db()
    assert sequence.status == Sequence.PAUSED
    assert sequence.pause_reason.startswith("Step 1 “Step 1 for {{ subscriber.first_name }}”: The body cannot be")
    assert set(Message.objects.values_list("status", flat=True)) == {"queued"}


def test_ring_due_rings_only_steps_with_due_mail(smtp_server, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 3)
    run(T0, sequence)
    rung = step_sending.ring_due()
    assert rung == [sequence.steps.get(position=1).pk]


def test_figures_count_what_the_ledger_and_the_enrollments_know(smtp_server):
    # given three readers through a two-step sequence, one bouncing and one unsubscribing
    backend_for(smtp_server)
    smtp_server.rcpt_replies["reader1@example.org"] = "550 5.1.1 No such user"
    sequence = build(steps=((0, "days"), (1, "days")))
    readers = people(sequence.mailing_list, 3)
    run(T0, sequence)
    send_all(sequence)
    lists.unsubscribe(readers[2], sequence.mailing_list)
    run(T0 + DAY, sequence)
    send_all(sequence)
    # when
    figures = sequence_stats.figures(sequence, fresh=True)
    # then
    first, second = figures.steps
    assert (first.sent, first.failed, first.bounced, first.unsubscribed_after) == (2, 1, 1, 1)
    assert (second.sent, second.failed, second.waiting) == (1, 0, 0)
    assert (first.tracking["sent"], second.tracking["sent"]) == (2, 1)  # the tracking rollups agree
    assert (figures.entered, figures.active, figures.finished) == (3, 0, 1)
    assert figures.exits == [("Address suppressed", 1), ("Unsubscribed from the list", 1)]
    assert [(label, n, p) for label, n, p in figures.funnel()] == [
        ("Entered", 3, 100), ("1. Step 1 for {{ subscriber.first_name }}", 2, 67),
        ("2. Step 2 for {{ subscriber.first_name }}", 1, 33), ("Finished", 1, 33)]


def test_subscribers_in_tokyo_and_new_york_get_a_morning_window_in_their_own_morning_across_dst(smtp_server):
    """A 9:00–11:00 window, a step a day, across New York's spring-forward (9 March 2025)."""
    # given
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days"), (1, "days"), (1, "days"), (1, "days")))
    Step.objects.filter(sequence=sequence).update(window_start_hour=9, window_end_hour=11)
    tokyo = people(sequence.mailing_list, 1, prefix="tokyo", time_zone="Asia/Tokyo")[0]
    new_york = people(sequence.mailing_list, 1, prefix="newyork", time_zone="America/New_York")[0]
    start = T0 + 3 * DAY  # Thursday 6 March 2025, 08:00 UTC
    arrivals = {}
    # when the clock moves on hour by hour for a week, sending what comes due
    for tick in range(7 * 24):
        at = start + tick * HOUR
        seen = len(smtp_server.messages)
        if run(at, sequence).queued:
            send_all(sequence)
        for received in smtp_server.messages[seen:]:
            arrivals.setdefault(received.rcpt_tos[0], []).append(at)
    # then each got all six, one a day, at 9:xx in their own time zone
    for subscriber, zone in ((tokyo, "Asia/Tokyo"), (new_york, "America/New_York")):
        local = [t.astimezone(zoneinfo.ZoneInfo(zone)) for t in arrivals[subscriber.email]]
        assert len(local) == 6
        assert all(9 <= t.hour < 11 for t in local), local
        assert [t.date() for t in local] == [local[0].date() + timedelta(days=n) for n in range(6)]
    ny_utc_hours = [t.hour for t in arrivals[new_york.email]]
    assert ny_utc_hours[0] == 14 and ny_utc_hours[-1] == 13  # 9:00 EST, then 9:00 EDT
    assert {t.hour for t in arrivals[tokyo.email]} == {0}  # 9:00 JST is 00:00 UTC


def test_an_unsubscribe_between_two_steps_stops_the_later_steps_end_to_end(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"), (1, "days"), (1, "days")))
    stays, leaves = people(sequence.mailing_list, 2)
    for day in range(3):
        run(T0 + day * DAY, sequence)
        send_all(sequence)
        if day == 0:
            lists.unsubscribe(leaves, sequence.mailing_list)
    assert sorted(recipients(smtp_server)) == [
        ("reader0@example.org", "Step 1 for Reader0"), ("reader0@example.org", "Step 2 for Reader0"),
        ("reader0@example.org", "Step 3 for Reader0"), ("reader1@example.org", "Step 1 for Reader1")]
    assert Enrollment.objects.get(subscriber=leaves).exit_reason == Enrollment.UNSUBSCRIBED


def test_scheduler_tick_enrolls_queues_and_rings_the_senders(
    smtp_server, settings, monkeypatch, tmp_path, django_capture_on_commit_callbacks
):
    """The beat task end to end, Celery eager: a new subscriber gets the welcome mail."""
    from campaigns import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = True
    backend_for(smtp_server)
    clock = tmp_path / "clock"
    clock.write_text(T0.isoformat())
    monkeypatch.setenv("SCHEDULER_CLOCK_FILE", str(clock))
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 1)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.schedule_sequences()
    assert recipients(smtp_server) == [("reader0@example.org", "Step 1 for Reader0")]


def test_blocklisted_between_queueing_and_sending_is_skipped(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)
    Subscriber.objects.filter(pk=reader.pk).update(status=Subscriber.BLOCKLISTED)
    send_all(sequence)
    assert list(Message.objects.values_list("status", flat=True)) == ["skipped"]


def test_unconfirmed_again_is_treated_as_unsubscribed_at_send_time(smtp_server):
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    reader = people(sequence.mailing_list, 1)[0]
    run(T0, sequence)
    Subscription.objects.filter(subscriber=reader).update(status=Subscription.UNCONFIRMED)
    send_all(sequence)
    assert smtp_server.messages == []


def test_pass_result_counts_what_happened():
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 4)
    result = scheduler.run(now=T0, discover_every=0)
    assert (result.enrolled, result.queued, result.rescheduled, result.finished) == (4, 4, 4, 0)


def test_a_confirmed_signup_is_enrolled_at_once_and_gets_the_welcome_mail(
    smtp_server, settings, django_capture_on_commit_callbacks
):
    """lists announces the confirmation (lists.events); campaigns enrolls right after the commit."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"), (1, "days")))
    sequence.mailing_list.opt_in = sequence.mailing_list.SINGLE
    sequence.mailing_list.save()
    with django_capture_on_commit_callbacks(execute=True):
        lists.subscribe(sequence.mailing_list, "New@Example.org", name="Nina New", source="form")
    assert Enrollment.objects.get().subscriber.email == "New@example.org"
    assert recipients(smtp_server) == [("New@example.org", "Step 1 for Nina")]
