"""Broadcast services: create, check, send once, schedule, pause, resume, cancel, progress, cost, test send."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from campaigns import broadcasts, ledger
from campaigns.models import Broadcast, Message, Template
from tests.factories import MailingListFactory
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, audience, backend_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Newsletter")


@pytest.fixture
def draft(newsletter):
    audience(newsletter, 3)
    return BroadcastFactory(lists=[newsletter])


def test_create_refuses_a_template_that_does_not_parse_with_the_line(newsletter):
    with pytest.raises(ValidationError) as caught:
        broadcasts.create(name="Bad", sender=SenderFactory(), subject="Hi", body="<p>ok</p>\n{% if %}",
                          lists=[newsletter])
    assert "Line 2" in caught.value.message_dict["body"][0]
    assert not Broadcast.objects.filter(name="Bad").exists()


def test_from_template_copies_the_saved_content(newsletter):
    template = Template.objects.create(name="Spring", subject="Hello {{ subscriber.name }}", body=BODY)
    broadcast = broadcasts.from_template(template, name="Spring 2030", sender=SenderFactory(), lists=[newsletter])
    assert (broadcast.subject, broadcast.body, broadcast.status) == ("Hello {{ subscriber.name }}", BODY, "draft")
    assert list(broadcast.lists.all()) == [newsletter]


def test_send_now_moves_to_sending_once(draft, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        first = broadcasts.send_now(draft)
        second = broadcasts.send_now(draft)
    assert (first, second) == (True, False)
    assert len(callbacks) == 1  # one bell for the start
    draft.refresh_from_db()
    assert draft.status == "sending" and draft.started_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_send_now_calls_at_once_write_the_ledger_once(newsletter, settings):
    # given: real transactions, two threads pressing "send" at the same moment
    settings.CELERY_TASK_ALWAYS_EAGER = True
    audience(newsletter, 4)
    broadcast = BroadcastFactory(lists=[newsletter])
    results, barrier = [], threading.Barrier(2)

    def press():
        barrier.wait()
        try:
            results.append(broadcasts.send_now(Broadcast.objects.get(pk=broadcast.pk)))
        finally:
            connection.close()

    threads = [threading.Thread(target=press) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then
    assert sorted(results) == [False, True]
    assert Message.objects.filter(broadcast=broadcast).count() == 4
    broadcast.refresh_from_db()
    assert broadcast.recipients_count == 4


def test_send_now_refuses_a_broadcast_with_no_audience_chosen():
    broadcast = BroadcastFactory()
    with pytest.raises(broadcasts.BroadcastError, match="Choose at least one list or a segment"):
        broadcasts.send_now(broadcast)
    broadcast.refresh_from_db()
    assert broadcast.status == "draft"


def test_send_now_refuses_when_the_sender_has_no_postal_address(draft):
    draft.sender.postal_address = " "
    draft.sender.save()
    with pytest.raises(broadcasts.BroadcastError, match="The sender has no postal address"):
        broadcasts.send_now(draft)
    assert Broadcast.objects.get(pk=draft.pk).status == "draft"


def test_start_writes_the_ledger_and_is_harmless_twice(draft):
    Broadcast.objects.filter(pk=draft.pk).update(status=Broadcast.SENDING)
    broadcasts.start(draft.pk)
    broadcasts.start(draft.pk)
    assert draft.messages.count() == 3
    draft.refresh_from_db()
    assert draft.recipients_count == 3


def test_schedule_then_start_due_at_the_time(draft):
    when = timezone.now() + timedelta(hours=1)
    assert broadcasts.schedule(draft, when) is True
    broadcasts.start_due(now=timezone.now())
    assert Broadcast.objects.get(pk=draft.pk).status == "scheduled"
    broadcasts.start_due(now=when + timedelta(seconds=1))
    draft.refresh_from_db()
    assert draft.status == "sending" and draft.messages.count() == 3
    assert set(draft.messages.values_list("next_attempt_at", flat=True)) == {when}


def test_schedule_in_local_time_starts_fourteen_hours_early(draft, settings):
    settings.TIME_ZONE = "UTC"
    nine = timezone.now().replace(microsecond=0) + timedelta(days=2)
    broadcasts.schedule(draft, nine, in_subscriber_time_zone=True)
    broadcasts.start_due(now=nine - timedelta(hours=14, seconds=1))
    assert Broadcast.objects.get(pk=draft.pk).status == "scheduled"
    broadcasts.start_due(now=nine - timedelta(hours=14))
    assert Broadcast.objects.get(pk=draft.pk).status == "sending"


def test_schedule_refuses_a_past_time(draft):
    with pytest.raises(broadcasts.BroadcastError, match="That time has passed"):
        broadcasts.schedule(draft, timezone.now() - timedelta(hours=1))
    assert Broadcast.objects.get(pk=draft.pk).status == "draft"


def test_unschedule_returns_to_draft(draft):
    broadcasts.schedule(draft, timezone.now() + timedelta(hours=1))
    assert broadcasts.unschedule(draft) is True
    assert (draft.status, draft.scheduled_at) == ("draft", None)


def test_cancel_cancels_pending_messages_and_keeps_sent_ones(draft):
    Broadcast.objects.filter(pk=draft.pk).update(status=Broadcast.SENDING)
    ledger.fan_out(draft, send_at=timezone.now())
    Message.objects.filter(pk=draft.messages.order_by("pk").first().pk).update(status=Message.SENT)
    Broadcast.objects.filter(pk=draft.pk).update(sent_count=1)  # as the pipeline counts it
    assert broadcasts.cancel(draft) is True
    assert broadcasts.cancel(draft) is False
    assert sorted(draft.messages.values_list("status", flat=True)) == ["cancelled", "cancelled", "sent"]
    progress = broadcasts.progress(draft)
    assert (progress["sent"], progress["cancelled"], progress["pending"], progress["status"]) == (1, 2, 0, "cancelled")


def test_pause_only_while_sending(draft):
    assert broadcasts.pause(draft, reason="x") is False
    assert Broadcast.objects.get(pk=draft.pk).status == "draft"


def test_progress_comes_from_the_counters(draft):
    Broadcast.objects.filter(pk=draft.pk).update(
        status=Broadcast.SENDING, recipients_count=10, sent_count=4, failed_count=1, skipped_count=1
    )
    progress = broadcasts.progress(draft)
    assert {k: progress[k] for k in ("recipients", "sent", "failed", "skipped", "unknown", "pending", "percent")} == {
        "recipients": 10, "sent": 4, "failed": 1, "skipped": 1, "unknown": 0, "pending": 4, "percent": 60,
    }


def test_estimate_cost_uses_the_backend_price(draft, smtp_server):
    backend_for(smtp_server, price_per_thousand=Decimal("0.10"))
    assert broadcasts.estimate_cost(draft) == Decimal("0.00")
    assert broadcasts.estimate_cost(draft, recipients=50_000) == Decimal("5.00")


def test_retry_messages_requeues_failed_and_unknown_and_reopens_the_broadcast(draft):
    Broadcast.objects.filter(pk=draft.pk).update(status=Broadcast.SENDING)
    ledger.fan_out(draft, send_at=timezone.now())
    a, b, c = draft.messages.order_by("pk")
    Message.objects.filter(pk=a.pk).update(status=Message.FAILED)
    Message.objects.filter(pk=b.pk).update(status=Message.UNKNOWN)
    Message.objects.filter(pk=c.pk).update(status=Message.SENT)
    Broadcast.objects.filter(pk=draft.pk).update(status=Broadcast.SENT)
    assert broadcasts.retry_messages([a.pk, b.pk, c.pk]) == 2
    assert sorted(draft.messages.values_list("status", flat=True)) == ["queued", "queued", "sent"]
    assert Broadcast.objects.get(pk=draft.pk).status == "sending"


def test_test_send_delivers_one_copy_and_writes_no_ledger_row(draft, smtp_server):
    backend_for(smtp_server)
    ok, text = broadcasts.test_send(draft, "proof@alice.example")
    assert ok is True and text.startswith("Sent to proof@alice.example through SMTP")
    assert [m.rcpt_tos for m in smtp_server.messages] == [["proof@alice.example"]]
    assert smtp_server.messages[0].message["Subject"] == "[Test] Spring sale for you"
    assert Message.objects.count() == 0


def test_test_send_reports_a_refusal(draft, smtp_server):
    backend_for(smtp_server)
    smtp_server.rcpt_replies["proof@alice.example"] = "550 5.1.1 No such user"
    ok, text = broadcasts.test_send(draft, "proof@alice.example")
    assert ok is False and text.endswith("did not accept it: 550 5.1.1 No such user")


def test_cancel_during_a_batch_counts_every_message_once(draft, smtp_server, monkeypatch):
    from campaigns import sending

    # given: the broadcast is cancelled after the first message of a batch of three
    monkeypatch.setattr(sending, "STATUS_CHECK_EVERY", 0)
    backend_for(smtp_server)
    Broadcast.objects.filter(pk=draft.pk).update(status=Broadcast.SENDING)
    ledger.fan_out(draft, send_at=timezone.now())
    original = sending.Batch._apply

    def apply_then_cancel(batch, row, outcome, message_id):
        original(batch, row, outcome, message_id)
        broadcasts.cancel(Broadcast.objects.get(pk=draft.pk))

    monkeypatch.setattr(sending.Batch, "_apply", apply_then_cancel)
    # when
    sending.send_batch(draft.pk)
    # then
    assert sorted(draft.messages.values_list("status", flat=True)) == ["cancelled", "cancelled", "sent"]
    progress = broadcasts.progress(draft)
    assert (progress["sent"], progress["cancelled"], progress["pending"]) == (1, 2, 0)
