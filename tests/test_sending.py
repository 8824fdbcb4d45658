"""The delivery pipeline against real Postgres and a real SMTP server on loopback."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import broadcasts, journal, ledger, sending
from campaigns.models import Backend, Broadcast, Message
from lists.models import Subscriber, Subscription, Suppression
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Newsletter")


@pytest.fixture
def started(newsletter):
    """A broadcast to the newsletter, moved to sending with its ledger written."""

    def start(count=3, **fields):
        audience(newsletter, count)
        broadcast = BroadcastFactory(lists=[newsletter], **fields)
        Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
        broadcast.refresh_from_db()
        ledger.fan_out(broadcast, send_at=timezone.now())
        return broadcast

    return start


def statuses(broadcast):
    return sorted(broadcast.messages.values_list("email", "status"))


def test_send_batch_delivers_every_message_and_records_it(smtp_server, started):
    # given
    backend = backend_for(smtp_server)
    broadcast = started(3)
    # when
    result = sending.send_batch(broadcast.pk)
    # then
    assert result.counts["sent"] == 3
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader2@example.org"
    ]
    rows = list(broadcast.messages.order_by("pk"))
    assert [r.status for r in rows] == ["sent"] * 3
    assert [r.attempts for r in rows] == [1, 1, 1]
    assert all(r.backend_id == backend.pk and r.sent_at and r.leased_by == "" for r in rows)
    assert rows[0].last_response.startswith("250 ")
    broadcast.refresh_from_db()
    assert broadcast.sent_count == 3


def test_fan_out_writes_one_row_per_mailable_subscriber_across_lists(newsletter):
    # given: reader0..3 on the newsletter, reader0 and reader1 also on a second list
    others = MailingListFactory(name="Offers")
    people = audience(newsletter, 4)
    for person in people[:2]:
        SubscriptionFactory(subscriber=person, mailing_list=others)
    Subscription.objects.filter(subscriber=people[2]).update(status=Subscription.UNSUBSCRIBED)
    Subscriber.objects.filter(pk=people[3].pk).update(email="Reader3@Example.org")
    Suppression.objects.create(email="reader3@example.org", reason=Suppression.HARD_BOUNCE)
    audience(newsletter, 1, prefix="pending", status=Subscription.UNCONFIRMED)
    blocked = audience(others, 1, prefix="blocked")[0]
    Subscriber.objects.filter(pk=blocked.pk).update(status=Subscriber.BLOCKLISTED)
    broadcast = BroadcastFactory(lists=[newsletter, others])
    # when
    first = ledger.fan_out(broadcast, send_at=timezone.now())
    again = ledger.fan_out(broadcast, send_at=timezone.now())
    # then
    assert (first, again) == (2, 0)
    assert statuses(broadcast) == [("reader0@example.org", "queued"), ("reader1@example.org", "queued")]
    broadcast.refresh_from_db()
    assert broadcast.recipients_count == 2 and broadcast.fanned_out_at is not None


def test_recipients_count_matches_the_fan_out(newsletter):
    audience(newsletter, 5)
    broadcast = BroadcastFactory(lists=[newsletter])
    assert broadcasts.recipients_count(broadcast) == 5
    assert ledger.fan_out(broadcast, send_at=timezone.now()) == 5


def test_fan_out_in_subscriber_time_zones_uses_each_local_wall_clock(newsletter, settings):
    # given: 9:00 in the app's zone (UTC); one reader in Berlin, one in New York, one with a bad zone
    settings.TIME_ZONE = "UTC"
    people = audience(newsletter, 3)
    for person, zone in zip(people, ["Europe/Berlin", "America/New_York", "Mars/Olympus"]):
        Subscriber.objects.filter(pk=person.pk).update(time_zone=zone)
    broadcast = BroadcastFactory(lists=[newsletter], in_subscriber_time_zone=True)
    nine = timezone.datetime(2030, 1, 15, 9, 0, tzinfo=timezone.get_fixed_timezone(0))
    # when
    ledger.fan_out(broadcast, send_at=nine)
    # then
    times = dict(broadcast.messages.values_list("email", "next_attempt_at"))
    utc_hours = {email: value.astimezone(timezone.get_fixed_timezone(0)).hour for email, value in times.items()}
    assert utc_hours == {"reader0@example.org": 8, "reader1@example.org": 14, "reader2@example.org": 9}


def test_message_has_list_unsubscribe_headers_and_our_message_id(smtp_server, started, settings):
    # given
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@alice.example"
    backend_for(smtp_server)
    broadcast = started(1)
    # when
    sending.send_batch(broadcast.pk)
    # then
    message = smtp_server.messages[0].message
    row = broadcast.messages.get()
    unsubscribe = message["List-Unsubscribe"]
    assert unsubscribe.startswith("<http://testserver/u/") and unsubscribe.endswith(
        ">, <mailto:unsubscribe@alice.example?subject=unsubscribe>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"] == row.message_id and row.message_id.endswith("@testserver>")
    assert message["Subject"] == "Spring sale for Reader0"
    assert message["From"] == "Alice's Shop <news@alice.example>"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    url = unsubscribe.split(">")[0][1:]
    assert f'href="{url}"' in html and url in text
    assert "1 Market Street, Springfield" in html and "1 Market Street, Springfield" in text
    assert "shop.example" not in html  # links go through our click redirect
    assert "http://testserver/c/" in html and "http://testserver/o/" in html


def test_a_broadcast_without_tracking_keeps_links_and_has_no_pixel(smtp_server, started):
    backend_for(smtp_server)
    broadcast = started(1, track_opens=False, track_clicks=False)
    sending.send_batch(broadcast.pk)
    html = smtp_server.messages[0].message.get_body(("html",)).get_content()
    assert 'href="https://shop.example/blog"' in html
    assert "/c/" not in html and "/o/" not in html


def test_dkim_signature_verifies_with_dkimpy(smtp_server, started):
    import dkim as dkimpy

    from campaigns import dkim

    # given
    pem, txt = dkim.generate_key("ed25519")
    backend_for(smtp_server, dkim_domain="alice.example", dkim_selector="s1", dkim_private_key=pem)
    broadcast = started(1)
    # when
    sending.send_batch(broadcast.pk)
    # then
    raw = smtp_server.messages[0].raw
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt.encode())
    signed = smtp_server.messages[0].message["DKIM-Signature"].replace(" ", "").replace("\r\n", "")
    covered = signed.split("h=")[1].split(";")[0].lower().split(":")
    for header in ("from", "subject", "date", "message-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert header in covered


def test_unsubscribed_before_the_claim_is_skipped_with_the_reason(smtp_server, started, newsletter):
    # given
    backend_for(smtp_server)
    broadcast = started(2)
    Subscription.objects.filter(subscriber__email="reader0@example.org").update(status=Subscription.UNSUBSCRIBED)
    # when
    result = sending.send_batch(broadcast.pk)
    # then
    assert (result.counts["sent"], result.counts["skipped"]) == (1, 1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["reader1@example.org"]]
    skipped = broadcast.messages.get(email="reader0@example.org")
    assert (skipped.status, skipped.attempts) == ("skipped", 0)
    assert skipped.last_response == "Skipped: the subscriber unsubscribed."


def test_suppressed_and_deleted_subscribers_are_skipped(smtp_server, started):
    backend_for(smtp_server)
    broadcast = started(3)
    Suppression.objects.create(email="reader1@example.org", reason=Suppression.COMPLAINT)
    Subscriber.objects.filter(email="reader2@example.org").delete()
    sending.send_batch(broadcast.pk)
    assert dict(broadcast.messages.values_list("email", "last_response"))["reader1@example.org"] == (
        "Skipped: the address is on the suppression list."
    )
    deleted = broadcast.messages.get(email="reader2@example.org")
    assert (deleted.status, deleted.subscriber_id) == ("skipped", None)


def test_hard_bounce_fails_once_and_suppresses_the_address(smtp_server, started):
    # given
    backend_for(smtp_server)
    smtp_server.rcpt_replies["reader1@example.org"] = "550 5.1.1 <reader1@example.org>: no such user"
    broadcast = started(3)
    # when
    sending.send_batch(broadcast.pk)
    # then
    bounced = broadcast.messages.get(email="reader1@example.org")
    assert (bounced.status, bounced.attempts) == ("failed", 1)
    assert bounced.last_response == "550 5.1.1 <reader1@example.org>: no such user"
    assert Suppression.objects.get(email="reader1@example.org").reason == "hard_bounce"
    assert len(smtp_server.messages) == 2
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.failed_count) == (2, 1)


def test_temporary_failure_is_retried_later_with_back_off(smtp_server, started):
    # given
    backend_for(smtp_server, retry_schedule="2m 10m")
    smtp_server.set_data_reply("451 4.3.0 Try again later")
    broadcast = started(1)
    before = timezone.now()
    # when
    sending.send_batch(broadcast.pk)
    # then
    row = broadcast.messages.get()
    assert (row.status, row.attempts, row.last_response) == ("retry", 1, "451 4.3.0 Try again later")
    assert timedelta(seconds=119) < row.next_attempt_at - before < timedelta(seconds=125)
    assert sending.send_batch(broadcast.pk).claimed == 0  # not due yet
    # when: it is due and the server accepts again
    Message.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    smtp_server.set_data_reply(None)
    sending.send_batch(broadcast.pk)
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("sent", 2)


def test_second_retry_waits_for_the_next_delay_in_the_schedule(smtp_server, started):
    backend_for(smtp_server, retry_schedule="2m 10m")
    smtp_server.set_data_reply("452 4.2.2 Mailbox full")
    broadcast = started(1)
    Message.objects.filter(broadcast=broadcast).update(attempts=1, first_attempt_at=timezone.now())
    before = timezone.now()
    sending.send_batch(broadcast.pk)
    row = broadcast.messages.get()
    assert row.attempts == 2
    assert timedelta(seconds=599) < row.next_attempt_at - before < timedelta(seconds=605)


def test_retries_give_up_after_the_backend_limit_as_a_recorded_failure(smtp_server, started):
    # given: the first attempt was three days ago; the backend gives up after two
    backend_for(smtp_server)
    smtp_server.set_data_reply("451 4.3.0 Try again later")
    broadcast = started(1)
    Message.objects.filter(broadcast=broadcast).update(attempts=40, first_attempt_at=timezone.now() - timedelta(days=3))
    # when
    sending.send_batch(broadcast.pk)
    # then
    row = broadcast.messages.get()
    assert (row.status, row.attempts) == ("failed", 41)
    assert row.last_response == "Gave up after 41 attempts: 451 4.3.0 Try again later"


def test_a_burst_of_policy_rejections_pauses_the_broadcast_with_a_reason(smtp_server, started):
    # given
    backend_for(smtp_server)
    smtp_server.set_data_reply("554 5.7.1 Message rejected due to policy")
    broadcast = started(8)
    # when
    sending.send_batch(broadcast.pk)
    # then
    broadcast.refresh_from_db()
    assert broadcast.status == "paused"
    assert "5.7.1 Message rejected due to policy" in broadcast.pause_reason
    assert broadcast.messages.filter(status="queued").count() == 8  # nothing lost: all go again on resume
    assert broadcast.failed_count == 0


def test_paused_broadcast_is_not_claimed_and_resume_sends_the_rest(smtp_server, started):
    backend_for(smtp_server)
    broadcast = started(2)
    assert broadcasts.pause(broadcast, reason="Checking the copy") is True
    assert sending.send_batch(broadcast.pk).claimed == 0
    assert broadcasts.resume(broadcast) is True
    sending.send_batch(broadcast.pk)
    assert len(smtp_server.messages) == 2


def test_run_slot_finishes_the_broadcast_and_recounts(smtp_server, started, settings):
    settings.SEND_BATCH_SIZE = 2
    backend_for(smtp_server)
    broadcast = started(5)
    more = sending.run_slot(broadcast.pk, 0, budget=30)
    broadcast.refresh_from_db()
    assert more is False
    assert (broadcast.status, broadcast.sent_count, broadcast.recipients_count) == ("sent", 5, 5)
    assert broadcast.finished_at is not None


def test_reaper_marks_the_in_flight_message_unknown_and_requeues_the_rest(started):
    # given: a batch of three leased by a worker that died; its lease expired
    broadcast = started(3)
    rows, _ = ledger.claim(broadcast, limit=10, lease_seconds=60, token="dead-worker")
    assert len(rows) == 3
    # when
    unknown, requeued = ledger.reap(now=timezone.now() + timedelta(seconds=61))
    # then
    assert (unknown, requeued) == (1, 2)
    first, *rest = broadcast.messages.order_by("pk")
    assert (first.status, first.attempts) == ("unknown", 1)
    assert [(r.status, r.attempts, r.leased_by) for r in rest] == [("queued", 0, ""), ("queued", 0, "")]
    broadcast.refresh_from_db()
    assert broadcast.unknown_count == 1


def test_reaper_leaves_live_leases_alone(started):
    broadcast = started(2)
    ledger.claim(broadcast, limit=10, lease_seconds=60, token="live-worker")
    assert ledger.reap() == (0, 0)
    assert set(broadcast.messages.values_list("status", flat=True)) == {"sending"}


def test_recording_without_the_lease_changes_nothing(started):
    broadcast = started(1)
    rows, _ = ledger.claim(broadcast, limit=10, lease_seconds=60, token="mine")
    outcome = journal.Outcome(rows[0]["pk"], "sent", timezone.now(), None, None, "<x@y>", "", "250 OK")
    recorded = ledger.record_many([outcome], "someone-else")
    assert recorded == {}
    assert broadcast.messages.get().status == "sending"


def test_claim_skips_rows_of_another_lease(started):
    broadcast = started(3)
    first, _ = ledger.claim(broadcast, limit=2, lease_seconds=60, token="a")
    second, _ = ledger.claim(broadcast, limit=2, lease_seconds=60, token="b")
    assert len(first) == 2 and len(second) == 1
    assert not {r["pk"] for r in first} & {r["pk"] for r in second}


def test_claimed_rows_are_what_the_orm_reads_for_them(started):
    # given: subscribers with every kind of field, one of them retried before
    broadcast = started(3)
    people = list(Subscriber.objects.filter(subscriptions__mailing_list__in=broadcast.lists.all()).order_by("pk"))
    people[0].attributes = {"city": "Zürich", "n": [1, {"x": None}], "emoji": "✉"}
    people[0].time_zone = "Europe/Zurich"
    people[1].name = ""
    people[1].attributes = {}
    for person in people[:2]:
        person.save()
    earlier = timezone.now() - timedelta(hours=1)
    Message.objects.filter(subscriber=people[2]).update(attempts=2, first_attempt_at=earlier)
    # when
    rows, skipped = ledger.claim(broadcast, limit=10, lease_seconds=60, token="t")
    # then: the same dicts, values and types, as the ORM's values() gives
    expected = list(Message.objects.filter(broadcast=broadcast).order_by("pk").values(*ledger.ROW_FIELDS))
    assert skipped == 0 and rows == expected
    assert rows[0]["subscriber__attributes"] == {"city": "Zürich", "n": [1, {"x": None}], "emoji": "✉"}
    assert rows[2]["first_attempt_at"] == earlier and rows[2]["first_attempt_at"].utcoffset() == timedelta(0)
    assert set(Message.objects.filter(broadcast=broadcast).values_list("status", "leased_by")) == {("sending", "t")}


def test_unreachable_backend_fails_over_to_the_next_by_priority(smtp_server, started):
    from tests.smtp import free_port

    # given: the first backend's port has no server
    dead = backend_for(smtp_server, name="Dead", priority=1, port=free_port())
    backend_for(smtp_server, name="Alive", priority=2)
    broadcast = started(2)
    # when: three batches fail to connect, the dead backend rests
    for _ in range(sending.FAILOVER_AFTER):
        assert sending.send_batch(broadcast.pk).stop is True
        Message.objects.filter(broadcast=broadcast).update(next_attempt_at=timezone.now())
    dead.refresh_from_db()
    assert dead.consecutive_failures == 3 and dead.down_until > timezone.now()
    assert broadcast.messages.filter(status="queued", attempts=0).count() == 2  # nothing was attempted
    sending.send_batch(broadcast.pk)
    # then
    assert len(smtp_server.messages) == 2
    assert set(broadcast.messages.values_list("backend__name", flat=True)) == {"Alive"}


def test_outbox_is_never_a_failover_target(smtp_server, started):
    from tests.smtp import free_port

    backend_for(smtp_server, name="Dead", priority=1, port=free_port(), down_until=timezone.now() + timedelta(hours=1))
    broadcast = started(1)
    result = sending.send_batch(broadcast.pk)
    assert result.stop is True and result.claimed == 0
    assert Backend.objects.filter(kind=Backend.OUTBOX, env_key="EMAIL_URL").exists()


def test_env_backend_writes_to_the_outbox_when_it_is_the_only_one(started, settings):
    from autoresponder import outbox

    broadcast = started(2)
    sending.send_batch(broadcast.pk)
    assert outbox.count() == 2
    assert set(broadcast.messages.values_list("status", flat=True)) == {"sent"}


def test_a_template_that_drops_the_unsubscribe_link_is_refused_with_the_reason(started, smtp_server):
    backend_for(smtp_server)
    broadcast = started(1, body="<p>Hello {{ subscriber.name }}</p>")
    assert broadcasts.problems(broadcast) == [
        "The message has no visible unsubscribe link. Add {{ unsubscribe_url }} as a link. "
        "The plain-text part has no unsubscribe link. The sender's postal address is missing. "
        "Add {{ sender.postal_address }} to the footer. The plain-text part is missing the sender's postal address."
    ]
    sending.send_batch(broadcast.pk)
    row = broadcast.messages.get()
    assert row.status == "failed" and row.last_response.startswith("Not sent: The message has no visible")
    assert smtp_server.messages == []


def test_send_broadcast_command_sends_in_the_foreground_with_progress(smtp_server, newsletter):
    from io import StringIO

    from django.core.management import call_command

    backend_for(smtp_server)
    audience(newsletter, 4)
    broadcast = BroadcastFactory(lists=[newsletter])
    out = StringIO()
    call_command("send_broadcast", broadcast.pk, "--start", stdout=out)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.sent_count) == ("sent", 4)
    assert len(smtp_server.messages) == 4
    assert "Wrote 4 ledger rows." in out.getvalue()
    assert out.getvalue().rstrip().endswith("Sent: 100% · sent 4 of 4 · failed 0 · skipped 0 · unknown 0 · pending 0")


def test_send_broadcast_command_refuses_a_draft_without_start(newsletter):
    from django.core.management import CommandError, call_command

    broadcast = BroadcastFactory(lists=[newsletter])
    with pytest.raises(CommandError, match="is draft, not sending. Use --start"):
        call_command("send_broadcast", broadcast.pk)


def test_a_row_unsubscribed_after_the_claim_is_skipped_within_the_batch(smtp_server, started, monkeypatch):
    # given: checks every message, and reader2 unsubscribes while the batch is being sent
    monkeypatch.setattr(sending, "STATUS_CHECK_EVERY", 0)
    backend_for(smtp_server)
    broadcast = started(4)
    original = sending.Batch._apply

    def apply_then_unsubscribe(batch, row, outcome, message_id):
        original(batch, row, outcome, message_id)
        if row["email"] == "reader0@example.org":
            Subscription.objects.filter(subscriber__email="reader2@example.org").update(status="unsubscribed")

    monkeypatch.setattr(sending.Batch, "_apply", apply_then_unsubscribe)
    # when
    result = sending.send_batch(broadcast.pk)
    # then
    assert (result.counts["sent"], result.counts["skipped"]) == (3, 1)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader3@example.org"
    ]
    assert broadcast.messages.get(email="reader2@example.org").status == "skipped"


def test_a_failure_after_submitting_marks_that_message_unknown_and_requeues_the_rest(smtp_server, started, monkeypatch):
    # given: rendering the second message blows up while the first is with the server
    from campaigns.composing import Job

    backend_for(smtp_server)
    broadcast = started(3)
    original, calls = Job.envelope, []

    def envelope(job, row, **kwargs):
        calls.append(row["email"])
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return original(job, row, **kwargs)

    monkeypatch.setattr(Job, "envelope", envelope)
    # when
    with pytest.raises(RuntimeError):
        sending.send_batch(broadcast.pk)
    # then: the first went to the server; it is never sent again
    assert [m.rcpt_tos[0] for m in smtp_server.messages] == ["reader0@example.org"]
    assert statuses(broadcast) == [
        ("reader0@example.org", "unknown"), ("reader1@example.org", "queued"), ("reader2@example.org", "queued")
    ]


def test_a_broadcast_whose_template_cannot_render_is_paused_with_the_reason(smtp_server, started):
    backend_for(smtp_server)
    broadcast = started(2)
    Broadcast.objects.filter(pk=broadcast.pk).update(body="<p>{{ subscriber.name | no_such_filter }}</p>")
    result = sending.send_batch(broadcast.pk)
    broadcast.refresh_from_db()
    assert result.stop is True and broadcast.status == "paused"
    assert broadcast.pause_reason == "The body cannot be rendered: Line 1: unknown filter 'no_such_filter'"
    assert statuses(broadcast) == [("reader0@example.org", "queued"), ("reader1@example.org", "queued")]


def test_a_template_dropping_the_footer_for_some_subscribers_fails_only_those(smtp_server, started):
    backend_for(smtp_server)
    body = ('<p>Hi {{ subscriber.name }}</p>{% if subscriber.email != "reader1@example.org" %}'
            '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>{% endif %}')
    broadcast = started(3, body=body)
    sending.send_batch(broadcast.pk)
    assert statuses(broadcast) == [
        ("reader0@example.org", "sent"), ("reader1@example.org", "failed"), ("reader2@example.org", "sent")
    ]
    assert broadcast.messages.get(email="reader1@example.org").last_response.startswith(
        "Not sent: The message has no visible unsubscribe link."
    )


def test_a_healthy_backend_has_last_ok_at_written_once_a_minute_and_failures_cleared_at_once(smtp_server):
    # given: a backend that answered 10 s ago
    backend = backend_for(smtp_server)
    recently = timezone.now() - timedelta(seconds=10)
    Backend.objects.filter(pk=backend.pk).update(last_ok_at=recently)
    # when / then: another good batch leaves the row alone
    sending.backend_ok(backend)
    assert Backend.objects.get(pk=backend.pk).last_ok_at == recently
    # but failures counted meanwhile (by another worker) are cleared at once
    Backend.objects.filter(pk=backend.pk).update(consecutive_failures=2)
    sending.backend_ok(backend)
    row = Backend.objects.get(pk=backend.pk)
    assert row.consecutive_failures == 0 and row.last_ok_at > recently
    # and after a minute the time is written again
    long_ago = timezone.now() - timedelta(minutes=2)
    Backend.objects.filter(pk=backend.pk).update(last_ok_at=long_ago)
    sending.backend_ok(backend)
    assert Backend.objects.get(pk=backend.pk).last_ok_at > long_ago
