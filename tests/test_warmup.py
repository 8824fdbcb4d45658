"""Warm-up: a backend's daily cap grows from its start date; messages over the cap wait for the
next day, against real Postgres, Redis and an SMTP server on loopback."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns import ledger, sending, step_sending, warmup
from campaigns.models import Backend, Broadcast, Message, SendingDomain
from tests.sending_factories import BroadcastFactory, SMTPBackendFactory, audience, backend_for
from tests.sequence_helpers import T0, build, people, run

pytestmark = pytest.mark.django_db

SCHEDULE = "50 100 500 1000 5000 10000 20000 50000"




def started(newsletter_size=4):
    from tests.factories import MailingListFactory

    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, newsletter_size)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    ledger.fan_out(broadcast, send_at=timezone.now())
    broadcast.refresh_from_db()
    return broadcast


def frozen(monkeypatch, at):
    """Every timezone.now() (the ledger, the warm-up) answers `at`."""
    monkeypatch.setattr(timezone, "now", lambda: at)
    return at


# --- The schedule ----------------------------------------------------------------------------


def test_a_schedule_is_daily_caps_with_k_for_thousands():
    assert warmup.parse_schedule("50 100, 500\n1k 5K") == [50, 100, 500, 1000, 5000]
    assert warmup.parse_schedule("  ") == []


@pytest.mark.parametrize("text, bad", [("50 100 1,000", "“000”"), ("50 ten", "“ten”"), ("0 50", "“0”"),
                                       ("50 -5", "“-5”")])
def test_a_schedule_with_something_not_a_cap_is_refused_with_the_item(text, bad):
    with pytest.raises(ValidationError) as caught:
        warmup.parse_schedule(text)
    assert caught.value.messages == [
        f"{bad} is not a daily cap. Write one whole number above zero per day, without thousands separators, "
        "e.g. 50 100 500 1000 5000 (5k means 5000)."
    ]


def test_the_day_and_its_cap_follow_the_start_date_then_the_cap_ends():
    now = datetime(2026, 3, 3, 12, 0, tzinfo=UTC)
    start = Backend(pk=1, warmup_schedule=SCHEDULE, warmup_started_on=date(2026, 3, 1))
    plan = warmup.plan_for(start, now)
    assert (plan.day, plan.days, plan.cap, plan.date) == (3, 8, 500, date(2026, 3, 3))
    assert warmup.plan_for(start, now + timedelta(days=5)).cap == 50000  # day 8, the last
    assert warmup.plan_for(start, now + timedelta(days=6)).cap is None  # day 9: no cap any more
    assert warmup.plan_for(Backend(pk=1, warmup_schedule=""), now) is None


def test_a_day_before_the_start_counts_as_day_one():
    backend = Backend(pk=1, warmup_schedule=SCHEDULE, warmup_started_on=date(2026, 3, 1))
    plan = warmup.plan_for(backend, datetime(2026, 2, 20, 12, 0, tzinfo=UTC))
    assert (plan.day, plan.cap) == (1, 50)


def test_days_turn_at_midnight_in_the_site_time_zone(settings):
    # given: 23:30 UTC on 2 March is 00:30 on 3 March in Berlin
    settings.TIME_ZONE = "Europe/Berlin"
    now = datetime(2026, 3, 2, 23, 30, tzinfo=UTC)
    # when
    plan = warmup.plan_for(Backend(pk=1, warmup_schedule=SCHEDULE, warmup_started_on=date(2026, 3, 1)), now)
    # then
    assert (plan.date, plan.day, plan.cap) == (date(2026, 3, 3), 3, 500)
    assert plan.resumes_at == datetime(2026, 3, 3, 23, 0, tzinfo=UTC)  # midnight of 4 March in Berlin


# --- The cap across workers ----------------------------------------------------------------------


def _two_workers_share_the_cap():
    plan = warmup.Plan(key="b-shared", date=date(2026, 3, 3), day=1, days=2, cap=12)
    first, second, third = warmup.take(plan, 10), warmup.take(plan, 10), warmup.take(plan, 10)
    warmup.give_back(plan, 3)  # the first worker's batch stopped early
    return (first, second, third, warmup.take(plan, 10), warmup.used_today(plan))


def test_workers_share_the_day_cap_in_redis_and_give_back_what_they_did_not_send(settings):
    assert settings.REDIS_URL
    assert _two_workers_share_the_cap() == (10, 2, 0, 3, 12)


def test_without_redis_a_locked_file_keeps_the_same_count(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.DATA_DIR = tmp_path
    assert _two_workers_share_the_cap() == (10, 2, 0, 3, 12)


def test_a_new_day_has_a_fresh_count():
    today = warmup.Plan(key="b-days", date=date(2026, 3, 3), day=1, days=2, cap=5)
    tomorrow = warmup.Plan(key="b-days", date=date(2026, 3, 4), day=2, days=2, cap=5)
    assert (warmup.take(today, 10), warmup.take(tomorrow, 10)) == (5, 5)


# --- Sending ---------------------------------------------------------------------------------------


def test_messages_over_the_day_cap_wait_for_the_next_day_and_go_out_then_exactly_once(smtp_server, monkeypatch):
    # given: day 1 of "2 5", four recipients
    now = frozen(monkeypatch, datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    backend_for(smtp_server, name="Fresh IP", warmup_schedule="2 5", warmup_started_on=date(2026, 3, 3))
    broadcast = started(4)
    # when
    result = sending.send_batch(broadcast.pk)
    # then: two went, two wait for midnight without an attempt
    assert (result.counts["sent"], result.stop) == (2, True)
    waiting = list(broadcast.messages.filter(status="queued").values_list("attempts", "next_attempt_at"))
    assert waiting == [(0, datetime(2026, 3, 4, 0, 0, tzinfo=UTC))] * 2
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.sent_count, broadcast.failed_count, broadcast.unknown_count) == (
        "sending", 2, 0, 0)
    assert warmup.waiting("broadcast", broadcast.pk) == (
        "Waiting for tomorrow's warm-up allowance: Fresh IP has sent its 2 messages for day 1 of its warm-up. "
        "The rest go from 2026-03-04 00:00 (UTC); nothing has failed."
    )
    # and nothing more goes today
    assert sending.send_batch(broadcast.pk).claimed == 0
    # when: the next day
    frozen(monkeypatch, now + timedelta(hours=9, minutes=1))
    sending.send_batch(broadcast.pk)
    # then: the two waiting ones went, each once
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader2@example.org", "reader3@example.org"]
    assert set(broadcast.messages.values_list("status", "attempts")) == {("sent", 1)}


def test_at_the_cap_the_messages_not_claimed_yet_wait_for_the_next_day_too(smtp_server, monkeypatch, settings):
    # given: batches of 2, a cap of 3, ten recipients
    settings.SEND_BATCH_SIZE = 2
    frozen(monkeypatch, datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    backend_for(smtp_server, warmup_schedule="3 10", warmup_started_on=date(2026, 3, 3))
    broadcast = started(10)
    # when
    while not sending.send_batch(broadcast.pk).stop:
        pass
    # then: three went; the seven others are due at midnight, none claimed in vain
    assert len(smtp_server.messages) == 3
    waiting = list(broadcast.messages.filter(status="queued").values_list("attempts", "next_attempt_at"))
    assert waiting == [(0, datetime(2026, 3, 4, 0, 0, tzinfo=UTC))] * 7
    assert ledger.next_due(broadcast.pk) == datetime(2026, 3, 4, 0, 0, tzinfo=UTC)


def test_the_cap_counts_every_broadcast_through_the_backend(smtp_server, monkeypatch):
    frozen(monkeypatch, datetime(2026, 3, 3, 15, 0, tzinfo=UTC))
    backend_for(smtp_server, warmup_schedule="3", warmup_started_on=date(2026, 3, 3))
    sending.send_batch(started(2).pk)
    from tests.factories import MailingListFactory

    other = MailingListFactory(name="Offers")
    audience(other, 2, prefix="buyer")
    second = BroadcastFactory(lists=[other])
    Broadcast.objects.filter(pk=second.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    ledger.fan_out(second, send_at=timezone.now())
    sending.send_batch(second.pk)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "buyer0@example.org", "reader0@example.org", "reader1@example.org"]
    assert list(second.messages.values_list("email", "status")) == [
        ("buyer0@example.org", "sent"), ("buyer1@example.org", "queued")]


def test_a_finished_warm_up_sends_without_a_cap(smtp_server):
    backend_for(smtp_server, warmup_schedule="1", warmup_started_on=warmup.local_date() - timedelta(days=1))
    broadcast = started(3)
    assert sending.send_batch(broadcast.pk).counts["sent"] == 3


def test_a_sending_domain_warm_up_caps_its_mail_through_any_backend(smtp_server):
    # given: the From domain (alice.example) on day 1 of "1 10"; the backend has no warm-up
    SendingDomain.objects.create(domain="alice.example", warmup_schedule="1 10", warmup_started_on=warmup.local_date())
    backend_for(smtp_server)
    broadcast = started(3)
    # when
    sending.send_batch(broadcast.pk)
    # then
    assert sorted(broadcast.messages.values_list("status", "attempts")) == [("queued", 0), ("queued", 0), ("sent", 1)]
    assert warmup.waiting("broadcast", broadcast.pk).startswith(
        "Waiting for tomorrow's warm-up allowance: the sending domain alice.example has sent its 1 message for day 1")


def test_both_caps_hold_and_the_one_not_used_is_given_back(smtp_server):
    # given: the backend may send 5 today, the domain 2
    SendingDomain.objects.create(domain="alice.example", warmup_schedule="2", warmup_started_on=warmup.local_date())
    backend = backend_for(smtp_server, warmup_schedule="5", warmup_started_on=warmup.local_date())
    # when
    sending.send_batch(started(4).pk)
    # then: two went; the backend counts two, not what its chunk took
    assert len(smtp_server.messages) == 2
    assert warmup.status(backend)["used"] == 2


def test_a_saved_schedule_that_no_longer_parses_is_ignored_not_fatal(smtp_server):
    backend = backend_for(smtp_server)
    Backend.objects.filter(pk=backend.pk).update(warmup_schedule="fifty")  # around the forms' validation
    assert sending.send_batch(started(2).pk).counts["sent"] == 2


def test_a_sequence_waits_for_the_allowance_too_and_says_so(smtp_server, alice_client):
    # given: a welcome step for three people, a backend on day 1 of "1 10"
    backend_for(smtp_server, warmup_schedule="1 10", warmup_started_on=warmup.local_date())
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 3)
    run(T0, sequence)
    # when
    step_sending.send_batch(sequence.steps.get().pk)
    # then
    assert sorted(Message.objects.values_list("status", "attempts")) == [("queued", 0), ("queued", 0), ("sent", 1)]
    page = alice_client.get(reverse("campaigns:sequence_detail", args=[sequence.pk])).content.decode()
    assert "Waiting for tomorrow&#x27;s warm-up allowance:" in page
    assert "has sent its 1 message for day 1 of its warm-up." in page


def test_the_broadcast_progress_says_it_waits_for_tomorrow(smtp_server, victor_client):
    backend_for(smtp_server, warmup_schedule="1 10", warmup_started_on=warmup.local_date())
    broadcast = started(2)
    sending.send_batch(broadcast.pk)
    page = victor_client.get(reverse("campaigns:broadcast_progress", args=[broadcast.pk])).content.decode()
    assert '<div class="callout" role="status" id="warmup-wait">Waiting for tomorrow&#x27;s warm-up allowance:' in page
    assert "1 waiting" in page


# --- Dashboard and admin ------------------------------------------------------------------------------


def _smtp_post(**overrides):
    return {
        "name": "Fresh IP", "is_active": "on", "priority": "10", "host": "mail.alice.example", "port": "587",
        "security": "starttls", "rate_per_second": "0", "window_limit": "0", "window_seconds": "86400",
        "price_per_thousand": "0", "retry_schedule": "1m 5m", "give_up_hours": "48", **overrides,
    }


def test_an_admin_sets_a_warm_up_and_day_one_is_today(alice_client):
    response = alice_client.post(reverse("campaigns:backend_create", args=["smtp"]),
                                 _smtp_post(warmup_schedule="50 100 500"))
    backend = Backend.objects.get(name="Fresh IP")
    assert response.status_code == 302
    assert (backend.warmup_schedule, backend.warmup_started_on) == ("50 100 500", warmup.local_date())


def test_a_schedule_that_does_not_parse_is_refused_on_the_form(alice_client):
    response = alice_client.post(reverse("campaigns:backend_create", args=["smtp"]),
                                 _smtp_post(warmup_schedule="50 100 1,000"))
    assert response.status_code == 200
    assert "“000” is not a daily cap." in response.content.decode()
    assert not Backend.objects.filter(name="Fresh IP").exists()


def test_the_backend_page_shows_the_day_the_cap_and_what_was_used_today(smtp_server, victor_client):
    backend = backend_for(smtp_server, warmup_schedule="2 5", warmup_started_on=warmup.local_date())
    sending.send_batch(started(3).pk)
    page = victor_client.get(reverse("campaigns:backend_detail", args=[backend.pk])).content.decode()
    assert '<div class="value">Day 1 of 2</div>' in page
    assert '<div class="value">2</div><div class="label">Cap today</div>' in page
    assert '<div class="value">2</div><div class="label">Used today</div>' in page
    assert '<div class="value">5</div><div class="label">Tomorrow</div>' in page


def test_a_backend_without_warm_up_says_so(victor_client):
    backend = SMTPBackendFactory()
    page = victor_client.get(reverse("campaigns:backend_detail", args=[backend.pk])).content.decode()
    assert "No warm-up: this backend sends as much as its rate and quota allow." in page


def test_the_admin_edits_and_lists_the_warm_up(admin_client):
    backend = SMTPBackendFactory(name="Fresh", warmup_schedule="50 100", warmup_started_on=date(2026, 3, 1))
    listing = admin_client.get("/admin/campaigns/backend/").content.decode()
    form = admin_client.get(f"/admin/campaigns/backend/{backend.pk}/change/").content.decode()
    assert "50 100" in listing and "Warmup started on" in listing
    assert 'name="warmup_schedule"' in form and 'name="domain_throttle"' in form


@pytest.fixture
def admin_client(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_an_admin_gives_a_sending_domain_a_warm_up_and_its_page_shows_it(alice_client, victor_client):
    domain = SendingDomain.objects.create(domain="alice.example")
    response = alice_client.post(reverse("campaigns:domain_edit", args=[domain.pk]),
                                 {"dmarc_rua": "", "return_path_domain": "", "warmup_schedule": "100 1k"})
    assert response.status_code == 302
    domain.refresh_from_db()
    assert (domain.warmup_schedule, domain.warmup_started_on) == ("100 1k", warmup.local_date())
    page = victor_client.get(reverse("campaigns:domain_detail", args=[domain.pk])).content.decode()
    assert '<div class="value">Day 1 of 2</div>' in page
    assert '<div class="value">100</div><div class="label">Cap today</div>' in page
    assert '<div class="value">1000</div><div class="label">Tomorrow</div>' in page


def test_a_domain_schedule_that_does_not_parse_is_refused(alice_client):
    domain = SendingDomain.objects.create(domain="alice.example")
    response = alice_client.post(reverse("campaigns:domain_edit", args=[domain.pk]),
                                 {"dmarc_rua": "", "return_path_domain": "", "warmup_schedule": "lots"})
    assert response.status_code == 200
    assert "“lots” is not a daily cap." in response.content.decode()
    assert SendingDomain.objects.get().warmup_schedule == ""
