"""Per-recipient-domain throttling on the SMTP path: at most so many messages per minute to one
mailbox provider, across workers (Redis), deferring the rest without counting an attempt."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from campaigns import ledger, sending, throttle
from campaigns.models import Backend, Broadcast
from lists.models import Subscriber, Subscription
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, backend_for

pytestmark = pytest.mark.django_db


def broadcast_to(*emails):
    newsletter = MailingListFactory(name="Newsletter")
    people = Subscriber.objects.bulk_create(Subscriber(email=e) for e in emails)
    Subscription.objects.bulk_create(
        Subscription(subscriber=p, mailing_list=newsletter, status=Subscription.CONFIRMED, source=Subscription.IMPORT)
        for p in people
    )
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    ledger.fan_out(broadcast, send_at=timezone.now())
    return broadcast


# --- The rules ----------------------------------------------------------------------------------


def test_rules_name_providers_domains_and_a_default():
    rules = throttle.parse("Google=600/min; microsoft = 300/min\nexample.org=5/s, *=2000/h")
    assert rules == {"google": throttle.Rule(600, 60), "microsoft": throttle.Rule(300, 60),
                     "example.org": throttle.Rule(5, 1), "*": throttle.Rule(2000, 3600)}
    assert throttle.parse("") == {}


@pytest.mark.parametrize("text, message", [
    ("google=600", "“google=600” is not a limit. Write provider=number/unit, e.g. google=600/min."),
    ("gmail=600/min", "“gmail” is not google, microsoft, yahoo, * or a domain name such as example.org."),
    ("google=600/day", "“day” is not a unit. Use /s, /min or /h."),
    ("google=0/min", "google: the limit must be at least 1 message. Remove the rule to send without a limit."),
    ("google=6/min, google=7/min", "google has two limits. Keep one."),
])
def test_a_rule_that_does_not_parse_is_refused_with_a_plain_reason(text, message):
    with pytest.raises(ValidationError) as caught:
        throttle.parse(text)
    assert caught.value.messages == [message]


@pytest.mark.parametrize("email, provider", [
    ("a@gmail.com", "google"), ("a@GoogleMail.com", "google"), ("a@outlook.com", "microsoft"),
    ("a@hotmail.co.uk", "microsoft"), ("a@live.fr", "microsoft"), ("a@msn.com", "microsoft"),
    ("a@yahoo.com", "yahoo"), ("a@yahoo.co.jp", "yahoo"), ("a@ymail.com", "yahoo"), ("a@aol.com", "yahoo"),
    ("a@example.org", "example.org"), ("a@live.example.com", "live.example.com"),
    ("a@gmail.com.example.net", "gmail.com.example.net"),
])
def test_addresses_are_grouped_by_mailbox_provider(email, provider):
    assert throttle.provider_of(email)[0] == provider


def test_a_provider_rule_wins_over_its_domain_and_the_default():
    rules = throttle.parse("google=10/min, gmail.com=3/min, example.org=2/min, *=5/min")
    assert throttle.rule_for(rules, "x@gmail.com") == ("google", throttle.Rule(10, 60))
    assert throttle.rule_for(rules, "x@example.org") == ("example.org", throttle.Rule(2, 60))
    assert throttle.rule_for(rules, "x@example.net") == ("example.net", throttle.Rule(5, 60))
    assert throttle.rule_for(throttle.parse("google=10/min"), "x@example.net") == ("example.net", None)


# --- Across workers ------------------------------------------------------------------------------


def _two_batches():
    rule = throttle.Rule(3, 60)
    first = throttle.take("b-test", {"google": (rule, 2), "example.org": (rule, 1)})
    second = throttle.take("b-test", {"google": (rule, 2)})
    return first, second


def test_two_batches_share_a_provider_window_in_redis(settings):
    assert settings.REDIS_URL
    first, second = _two_batches()
    assert first == {"google": (2, 0.0), "example.org": (1, 0.0)}
    granted, wait = second["google"]
    assert granted == 1 and 60 < wait <= 62  # room again when this second's sends leave the minute


def test_without_redis_a_locked_file_keeps_the_same_window(settings, tmp_path):
    settings.REDIS_URL = ""
    settings.DATA_DIR = tmp_path
    first, second = _two_batches()
    assert first == {"google": (2, 0.0), "example.org": (1, 0.0)}
    assert second["google"][0] == 1 and 60 < second["google"][1] <= 62


# --- Sending ---------------------------------------------------------------------------------------


def test_messages_over_a_provider_limit_wait_without_an_attempt_the_rest_go(smtp_server):
    # given: at most 2 a minute to Google and 1 to each other domain
    backend_for(smtp_server, domain_throttle="google=2/min, *=1/min")
    broadcast = broadcast_to("a@gmail.com", "b@googlemail.com", "c@gmail.com", "d@example.org", "e@example.org",
                             "f@example.net")
    # when
    before = timezone.now()
    result = sending.send_batch(broadcast.pk)
    # then
    # (the fan-out sets no row order: which two of the three Google rows, and which of the two
    # example.org rows, go first follows the ledger ids)
    sent = sorted(m.rcpt_tos[0] for m in smtp_server.messages)
    waiting = {m.email: m for m in broadcast.messages.filter(status="queued")}
    google = {"a@gmail.com", "b@googlemail.com", "c@gmail.com"}
    example = {"d@example.org", "e@example.org"}
    assert (len(google & set(sent)), len(example & set(sent)), "f@example.net" in sent) == (2, 1, True)
    assert (result.counts["sent"], result.stop) == (4, False)
    assert set(waiting) | set(sent) == google | example | {"f@example.net"} and not set(waiting) & set(sent)
    assert {m.attempts for m in waiting.values()} == {0}
    assert all(before + timedelta(seconds=60) < m.next_attempt_at < before + timedelta(seconds=65)
               for m in waiting.values())
    broadcast.refresh_from_db()
    assert (broadcast.failed_count, broadcast.unknown_count, broadcast.status) == (0, 0, "sending")
    # and the next batch finds nothing due yet
    assert sending.send_batch(broadcast.pk).claimed == 0


def test_rows_beyond_a_window_are_spread_over_the_following_windows(smtp_server):
    backend_for(smtp_server, domain_throttle="google=2/min")
    broadcast = broadcast_to(*(f"p{i}@gmail.com" for i in range(7)))
    before = timezone.now()
    sending.send_batch(broadcast.pk)
    waits = sorted(round((m.next_attempt_at - before).total_seconds() / 60)
                   for m in broadcast.messages.filter(status="queued"))
    assert waits == [1, 1, 2, 2, 3]  # two a minute, in order


def test_a_batch_entirely_over_the_limit_opens_no_connection_and_stops(smtp_server):
    backend = backend_for(smtp_server, domain_throttle="google=1/min")
    throttle.take(f"b{backend.pk}", {"google": (throttle.Rule(1, 60), 1)})  # another worker took the minute
    broadcast = broadcast_to("a@gmail.com", "b@gmail.com")
    result = sending.send_batch(broadcast.pk)
    assert (result.claimed, result.stop, result.counts["sent"]) == (2, True, 0)
    assert smtp_server.messages == []
    assert set(broadcast.messages.values_list("status", "attempts")) == {("queued", 0)}
    assert Backend.objects.get(pk=backend.pk).last_ok_at is None


def test_domains_without_a_rule_are_not_throttled(smtp_server):
    backend_for(smtp_server, domain_throttle="google=1/min")
    broadcast = broadcast_to("a@example.org", "b@example.org", "c@example.org")
    assert sending.send_batch(broadcast.pk).counts["sent"] == 3


def test_only_smtp_backends_are_throttled():
    outbox = Backend(pk=99, kind=Backend.OUTBOX, domain_throttle="google=1/min")
    rows = [{"pk": 1, "email": "a@gmail.com"}, {"pk": 2, "email": "b@gmail.com"}]
    assert throttle.defer(outbox, rows, "token") == set()


# --- Dashboard ---------------------------------------------------------------------------------------


def _smtp_post(**overrides):
    return {
        "name": "Relay", "is_active": "on", "priority": "10", "host": "mail.alice.example", "port": "587",
        "security": "starttls", "rate_per_second": "0", "window_limit": "0", "window_seconds": "86400",
        "price_per_thousand": "0", "retry_schedule": "1m 5m", "give_up_hours": "48", **overrides,
    }


def test_an_admin_sets_provider_limits_on_an_smtp_backend(alice_client):
    response = alice_client.post(reverse("campaigns:backend_create", args=["smtp"]),
                                 _smtp_post(domain_throttle="google=600/min, *=120/min"))
    assert response.status_code == 302
    backend = Backend.objects.get(name="Relay")
    assert backend.domain_throttle == "google=600/min, *=120/min"
    page = alice_client.get(reverse("campaigns:backend_detail", args=[backend.pk])).content.decode()
    assert "Per mailbox provider: <code>google=600/min, *=120/min</code>." in page


def test_provider_limits_that_do_not_parse_are_refused_on_the_form(alice_client):
    response = alice_client.post(reverse("campaigns:backend_create", args=["smtp"]),
                                 _smtp_post(domain_throttle="gmail=600/min"))
    assert response.status_code == 200
    assert "“gmail” is not google, microsoft, yahoo, * or a domain name such as example.org." in (
        response.content.decode())
    assert not Backend.objects.exists()


def test_an_esp_backend_form_has_no_provider_limits(alice_client):
    page = alice_client.get(reverse("campaigns:backend_create", args=["sendgrid"])).content.decode()
    assert 'name="domain_throttle"' not in page
    assert 'name="warmup_schedule"' in page


def test_an_editor_cannot_change_provider_limits(bob_client, smtp_server):
    backend = backend_for(smtp_server, domain_throttle="google=600/min")
    response = bob_client.post(reverse("campaigns:backend_edit", args=[backend.pk]),
                               _smtp_post(domain_throttle="google=6000/min"))
    assert response.status_code == 403
    assert Backend.objects.get(pk=backend.pk).domain_throttle == "google=600/min"
