"""Automatic brakes: a broadcast pauses itself, saying why, when its first messages hard-bounce or
draw complaints too often, or when policy refusals (5.7.x) come in a row; against real Postgres,
Redis and an SMTP server on loopback."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import brakes, broadcasts, events, ledger, policy, sending
from campaigns.models import BouncePolicy, BrakeState, Broadcast, Event, Message
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for

pytestmark = pytest.mark.django_db


def set_policy(**fields):
    policy.current()
    BouncePolicy.objects.filter(pk=1).update(**fields)
    return BouncePolicy.objects.get(pk=1)


def started(count, *, bouncing=0, bouncing_first=True):
    """A sending broadcast to `count` readers and `bouncing` addresses that do not exist, these due
    a minute before the readers (or after them): the claim takes due rows in that order."""
    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, bouncing, prefix="gone")
    audience(newsletter, count)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    now = timezone.now()
    ledger.fan_out(broadcast, send_at=now - timedelta(minutes=2))
    broadcast.messages.filter(email__startswith="gone").update(
        next_attempt_at=now - timedelta(minutes=3 if bouncing_first else 1))
    broadcast.refresh_from_db()
    return broadcast


def bounce_all_gone(smtp_server, count):
    for i in range(count):
        smtp_server.rcpt_replies[f"gone{i}@example.org"] = "550 5.1.1 No such user"


def complain(message, n=1):
    return policy.feedback(Event.COMPLAINT, message=message, uid=events.event_uid("test", message.pk, n),
                           source="webhook:test", detail="abuse report")


# --- The rule --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gone_out, bounces, complaints, expected", [
    (3, 1, 0, None),  # 1 of the first 3: too few messages to judge
    (99, 10, 0, None),  # not yet the minimum of 100
    (100, 5, 0, None),  # exactly 5 %: not more than the limit
    (100, 6, 0, "bounces"),
    (100, 0, 1, None),  # 1 %, but one complaint is not a pattern (at least 3)
    (1000, 0, 3, None),  # 0.3 %: not more
    (1000, 0, 4, "complaints"),
    (100, 6, 4, "bounces"),
])
def test_the_rule_needs_enough_messages_and_events_and_a_rate_over_the_limit(gone_out, bounces, complaints, expected):
    found = brakes.verdict(policy.current(), gone_out=gone_out, bounces=bounces, complaints=complaints)
    assert (found[0] if found else None) == expected


def test_a_brake_set_to_zero_is_off_and_a_tripped_one_is_skipped():
    rules = set_policy(brake_bounce_percent=Decimal("0"))
    assert brakes.verdict(rules, gone_out=100, bounces=100, complaints=0) is None
    assert brakes.verdict(policy.current(), gone_out=1000, bounces=0, complaints=9, skip={"complaints"}) is None


# --- The bounce brake --------------------------------------------------------------------------------


def test_hard_bounces_among_the_first_messages_pause_the_broadcast_with_the_reason(smtp_server, settings):
    # given: batches of 20; 4 of the first 20 addresses do not exist; judged from 20 messages
    settings.SEND_BATCH_SIZE = 20
    set_policy(brake_messages=50, brake_min_messages=20)
    backend_for(smtp_server)
    broadcast = started(36, bouncing=4)
    bounce_all_gone(smtp_server, 4)
    # when
    sending.send_batch(broadcast.pk)
    # then
    broadcast.refresh_from_db()
    assert broadcast.status == "paused"
    assert broadcast.pause_reason == (
        "Paused automatically: 4 of the first 20 messages hard-bounced (20 %), more than the 5 % the bounce policy "
        "allows. The list probably holds old, mistyped or bought addresses, and mailing them hurts your sender "
        "reputation. The bounced addresses are suppressed already. Check where this list came from, then resume "
        "(this brake will not pause this broadcast again) or cancel."
    )
    assert (broadcast.sent_count, broadcast.failed_count) == (16, 4)
    assert broadcast.messages.filter(status="queued").count() == 20  # nothing lost
    assert BrakeState.objects.get(pk=broadcast.pk).bounces == 4
    # when: resumed, the rest goes and the same brake does not pause it again
    smtp_server.rcpt_replies["reader30@example.org"] = "550 5.1.1 No such user"
    assert broadcasts.resume(broadcast) is True
    while sending.send_batch(broadcast.pk).claimed:
        pass
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.sent_count, broadcast.failed_count) == ("sending", 35, 5)
    assert len(smtp_server.messages) == 35


def test_one_bounce_among_the_first_three_pauses_nothing(smtp_server):
    backend_for(smtp_server)
    broadcast = started(2, bouncing=1)
    bounce_all_gone(smtp_server, 1)
    sending.run_slot(broadcast.pk, 0, budget=30)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.sent_count, broadcast.failed_count) == ("sent", 2, 1)
    assert BrakeState.objects.get(pk=broadcast.pk).bounces == 1


def test_the_watch_closes_after_the_first_messages_and_later_bounces_do_not_count(smtp_server, settings):
    # given: the first 10 messages are watched; the 4 bouncing addresses come after them
    settings.SEND_BATCH_SIZE = 10
    set_policy(brake_messages=10, brake_min_messages=10)
    backend_for(smtp_server)
    broadcast = started(10, bouncing=4, bouncing_first=False)
    bounce_all_gone(smtp_server, 4)
    # when
    while sending.send_batch(broadcast.pk).claimed:
        pass
    # then
    broadcast.refresh_from_db()
    state = BrakeState.objects.get(pk=broadcast.pk)
    assert broadcast.status == "sending" and broadcast.failed_count == 4
    assert (state.watched, state.bounces, state.closed_at is not None) == (10, 0, True)


# --- The complaint brake -------------------------------------------------------------------------------


def test_complaints_among_the_first_messages_pause_the_broadcast_once(smtp_server, settings):
    # given: 100 delivered
    backend_for(smtp_server)
    broadcast = started(101)
    settings.SEND_BATCH_SIZE = 100
    sending.send_batch(broadcast.pk)
    first = list(broadcast.messages.filter(status="sent").order_by("pk")[:4])
    # when: two complaints, one of them reported twice; then a third
    complain(first[0])
    complain(first[1])
    complain(first[1])
    broadcast.refresh_from_db()
    assert broadcast.status == "sending"
    done = complain(first[2])
    # then
    broadcast.refresh_from_db()
    reason = (
        "Paused automatically: 3 of the first 100 messages were reported as spam (3 %), more than the 0.3 % the "
        "bounce policy allows; at 0.3 % Gmail and Yahoo start refusing your mail. Check that everyone on these "
        "lists asked for it and recognises the sender, then resume (this brake will not pause this broadcast "
        "again) or cancel."
    )
    assert (broadcast.status, broadcast.pause_reason) == ("paused", reason)
    assert done[-1] == f"Broadcast “{broadcast.name}” paused: {reason}"
    assert BrakeState.objects.get(pk=broadcast.pk).complaints == 3
    # when: resumed, a fourth complaint does not pause it again
    broadcasts.resume(broadcast)
    complain(first[3])
    broadcast.refresh_from_db()
    assert broadcast.status == "sending"


def test_a_complaint_on_a_mail_of_no_broadcast_moves_no_brake():
    message = Message.objects.create(email="x@example.org", next_attempt_at=timezone.now(), status="sent")
    assert complain(message) == ["x@example.org suppressed (complaint)."]
    assert not BrakeState.objects.exists()


# --- The policy-refusal brake ----------------------------------------------------------------------------


def test_the_policy_refusal_brake_follows_the_bounce_policy(smtp_server):
    set_policy(policy_pause_after=2)
    backend_for(smtp_server)
    smtp_server.set_data_reply("554 5.7.1 Message rejected due to policy")
    broadcast = started(4)
    sending.send_batch(broadcast.pk)
    broadcast.refresh_from_db()
    assert broadcast.status == "paused"
    assert broadcast.pause_reason.startswith("Paused after 2 messages in a row were refused as policy violations")
    assert broadcast.messages.filter(status="queued").count() == 4


def test_the_policy_refusal_brake_switched_off_lets_the_refusals_fail(smtp_server):
    set_policy(policy_pause_after=0)
    backend_for(smtp_server)
    smtp_server.set_data_reply("554 5.7.1 Message rejected due to policy")
    broadcast = started(8)
    sending.run_slot(broadcast.pk, 0, budget=30)
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.failed_count) == ("sent", 8)


# --- Pages and admin -------------------------------------------------------------------------------------


def test_the_broadcast_page_lists_the_three_brakes(smtp_server, victor_client):
    backend_for(smtp_server)
    broadcast = started(3)
    sending.send_batch(broadcast.pk)
    page = victor_client.get(reverse("campaigns:broadcast_detail", args=[broadcast.pk])).content.decode()
    assert '<h2 id="brakes-h">Automatic brakes</h2>' in page
    assert ("<tr><th scope=\"row\">Hard bounces</th><td>0 of 3 (0 %)</td><td>pauses above 5 %, judged from 100 "
            "messages</td><td>watching the first 1000 messages</td></tr>") in page
    assert "<th scope=\"row\">Spam complaints</th><td>0 of 3 (0 %)</td><td>pauses above 0.3 %" in page
    assert ("<tr><th scope=\"row\">Policy refusals (5.7.x)</th><td>—</td><td>pauses after 5 in a row</td>"
            "<td>watching every message</td></tr>") in page


def test_a_tripped_brake_shows_on_the_broadcast_page(smtp_server, victor_client, settings):
    settings.SEND_BATCH_SIZE = 20
    set_policy(brake_messages=50, brake_min_messages=20)
    backend_for(smtp_server)
    broadcast = started(16, bouncing=4)
    bounce_all_gone(smtp_server, 4)
    sending.send_batch(broadcast.pk)
    page = victor_client.get(reverse("campaigns:broadcast_detail", args=[broadcast.pk])).content.decode()
    assert "<td>4 of 20 (20 %)</td>" in page
    assert '<span class="badge warn">paused it at <time' in page
    assert "Paused automatically: 4 of the first 20 messages hard-bounced (20 %)" in page


SETTINGS_URL = "/settings/bounces/"
VALID = {"hard_bounce_suppresses": "on", "soft_bounce_limit": "3", "soft_bounce_days": "15",
         "complaint_unsubscribes": "on", "complaint_suppresses": "on", "brake_messages": "1000",
         "brake_min_messages": "100", "brake_bounce_percent": "5", "brake_complaint_percent": "0.3",
         "policy_pause_after": "5"}


def test_an_admin_sets_the_brakes_on_the_bounce_policy_page(alice_client):
    page = alice_client.get(SETTINGS_URL).content.decode()
    assert "<legend>Automatic brakes</legend>" in page
    response = alice_client.post(SETTINGS_URL, {**VALID, "brake_bounce_percent": "2.5", "brake_messages": "5000",
                                                "policy_pause_after": "0"}, follow=True)
    assert "Bounce policy saved." in response.content.decode()
    row = BouncePolicy.objects.get(pk=1)
    assert (row.brake_bounce_percent, row.brake_messages, row.policy_pause_after) == (Decimal("2.50"), 5000, 0)


@pytest.mark.parametrize("field, value, error", [
    ("brake_min_messages", "2000", "The brakes cannot wait for more messages than they watch"),
    ("brake_bounce_percent", "101", "Ensure this value is less than or equal to 100."),
    ("brake_complaint_percent", "0.333", "Ensure that there are no more than 2 decimal places."),
])
def test_brake_settings_that_make_no_sense_are_refused(alice_client, field, value, error):
    response = alice_client.post(SETTINGS_URL, {**VALID, field: value})
    assert response.status_code == 200
    assert error in response.content.decode()
    row = BouncePolicy.objects.get(pk=1)
    assert (row.brake_messages, row.brake_min_messages, row.brake_bounce_percent) == (1000, 100, Decimal("5.00"))


def test_an_editor_cannot_loosen_the_brakes(bob_client):
    bob_client.post(SETTINGS_URL, {**VALID, "brake_bounce_percent": "50"})
    assert policy.current().brake_bounce_percent == Decimal("5.00")


@pytest.fixture
def admin_client(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_the_admin_lists_brake_states_and_rearms_them(admin_client):
    broadcast = BroadcastFactory(name="Spring")
    BrakeState.objects.create(broadcast=broadcast, bounces=7, bounce_tripped_at=timezone.now())
    listing = admin_client.get("/admin/campaigns/brakestate/").content.decode()
    assert "Spring" in listing
    admin_client.post("/admin/campaigns/brakestate/", {"action": "rearm", "_selected_action": [broadcast.pk]})
    assert BrakeState.objects.get(pk=broadcast.pk).bounce_tripped_at is None
    assert admin_client.get("/admin/campaigns/brakestate/add/").status_code == 403
    assert admin_client.get("/admin/campaigns/bouncepolicy/").status_code == 200
