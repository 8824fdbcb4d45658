"""The sunset policy: who counts as inactive (exactly), suggest and apply, the background run with its
progress, roles on the page, the overview note, the admin."""

import uuid
from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns import sunset
from campaigns.models import Broadcast, Event, Message, Sequence, Step, SunsetPolicy
from lists.models import Subscription
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory
from tests.sending_factories import BroadcastFactory, SenderFactory

pytestmark = pytest.mark.django_db

YEAR_AGO = timedelta(days=365)
REASON = "Sunset policy: no opens or clicks in 6 months"


def _member(email, mailing_list, *, since=YEAR_AGO, status=Subscription.CONFIRMED):
    subscriber = SubscriberFactory(email=email)
    SubscriptionFactory(subscriber=subscriber, mailing_list=mailing_list, status=status,
                        confirmed_at=timezone.now() - since)
    return subscriber


def _sent(subscriber, *, broadcast=None, step=None, ago=timedelta(days=30), status=Message.SENT):
    at = timezone.now() - ago
    return Message.objects.create(broadcast=broadcast, step=step, subscriber=subscriber, email=subscriber.email,
                                  status=status, next_attempt_at=at, sent_at=at if status == Message.SENT else None)


def _event(message, kind, *, ago=timedelta(days=20), machine=False):
    Event.objects.create(uid=uuid.uuid4(), kind=kind, message=message, is_machine=machine,
                         created_at=timezone.now() - ago, scope=Event.BROADCAST, scope_id=message.broadcast_id)


@pytest.fixture
def world():
    """Subscribers of every kind; the five marked inactive are the ones a 6-month sunset takes."""
    tracked = MailingListFactory(name="Newsletter")
    private = MailingListFactory(name="Private", privacy_mode=True)
    untracked = MailingListFactory(name="Untracked", track_opens=False, track_clicks=False)
    news = BroadcastFactory(lists=[tracked], status=Broadcast.SENT)
    spring = BroadcastFactory(lists=[tracked], status=Broadcast.SENT)
    quiet = BroadcastFactory(lists=[tracked], status=Broadcast.SENT, track_opens=False, track_clicks=False)
    secret = BroadcastFactory(lists=[private], status=Broadcast.SENT)
    sequence = Sequence.objects.create(name="Welcome", mailing_list=tracked, sender=SenderFactory())
    step = Step.objects.create(sequence=sequence, position=1, subject="Hi", body="<p>Hi</p>")
    people = {}

    def person(name, *lists, **member):
        people[name] = subscriber = _member(f"{name}@example.org", lists[0], **member)
        for other in lists[1:]:
            SubscriptionFactory(subscriber=subscriber, mailing_list=other, confirmed_at=timezone.now() - YEAR_AGO)
        return subscriber

    _event(_sent(person("reader", tracked), broadcast=news), Event.OPEN)
    _event(_sent(person("clicker", tracked), broadcast=news), Event.CLICK)
    _sent(person("sleeper", tracked), broadcast=news)  # inactive
    _sent(person("sleeper2", tracked, untracked), broadcast=news)  # inactive, on the tracked list only
    _event(_sent(person("scanned", tracked), broadcast=news), Event.OPEN, machine=True)  # inactive
    old = _sent(person("oldreader", tracked), broadcast=spring, ago=timedelta(days=250))
    _event(old, Event.OPEN, ago=timedelta(days=240))
    _sent(people["oldreader"], broadcast=news)  # inactive: read only before the window
    _sent(person("stepper", tracked), step=step)  # inactive: a sequence's mail counts too
    _sent(person("newcomer", tracked, since=timedelta(days=40)), broadcast=news)
    _sent(person("unmailed", tracked), broadcast=news, ago=timedelta(days=300))
    _sent(person("private", private), broadcast=secret)
    _sent(person("waiting", tracked, status=Subscription.UNCONFIRMED), broadcast=news)
    _sent(person("untracked", tracked), broadcast=quiet)
    _sent(person("bounced", tracked), broadcast=news, status=Message.FAILED)
    people["lists"] = {"tracked": tracked, "untracked": untracked, "private": private}
    return people


INACTIVE = ["oldreader@example.org", "scanned@example.org", "sleeper2@example.org", "sleeper@example.org",
            "stepper@example.org"]


def _unsubscribed():
    return sorted(Subscription.objects.filter(status=Subscription.UNSUBSCRIBED)
                  .values_list("subscriber__email", "mailing_list__name", "unsubscribe_reason"))


@pytest.mark.parametrize("moment, months, expected", [
    (datetime(2026, 3, 31, 12, tzinfo=dt_timezone.utc), 1, datetime(2026, 2, 28, 12, tzinfo=dt_timezone.utc)),
    (datetime(2024, 3, 31, 12, tzinfo=dt_timezone.utc), 1, datetime(2024, 2, 29, 12, tzinfo=dt_timezone.utc)),
    (datetime(2026, 1, 15, 8, tzinfo=dt_timezone.utc), 13, datetime(2024, 12, 15, 8, tzinfo=dt_timezone.utc)),
    (datetime(2026, 8, 31, 0, tzinfo=dt_timezone.utc), 6, datetime(2026, 2, 28, 0, tzinfo=dt_timezone.utc)),
])
def test_months_ago_counts_calendar_months(moment, months, expected):
    assert sunset.months_ago(moment, months) == expected


def test_it_finds_exactly_the_subscriptions_nobody_read(world):
    found = sunset.inactive(6)

    assert sorted(found.values_list("subscriber__email", flat=True)) == INACTIVE
    assert set(found.values_list("mailing_list__name", flat=True)) == {"Newsletter"}


def test_a_longer_window_reaches_back_to_older_opens(world):
    assert "oldreader@example.org" not in sunset.inactive(9).values_list("subscriber__email", flat=True)


def test_the_count_is_stored_on_the_policy_in_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    with django_assert_max_num_queries(12):  # however many subscribers, messages and events
        policy = sunset.count()

    assert (policy.inactive_subscribers, policy.inactive_subscriptions, policy.counted_months) == (5, 5, 6)
    assert sunset.is_counted(policy)


def test_suggest_counts_every_day_and_unsubscribes_nobody(world):
    sunset.current()

    policy = sunset.daily()

    assert policy.inactive_subscribers == 5 and _unsubscribed() == []
    assert sunset.daily() is None  # once a day


def test_apply_unsubscribes_them_once_a_day_with_the_reason(world):
    SunsetPolicy.objects.create(pk=1, mode=SunsetPolicy.APPLY)

    policy = sunset.daily()

    assert _unsubscribed() == [(email, "Newsletter", REASON) for email in INACTIVE]
    assert (policy.last_applied_count, policy.inactive_subscribers, policy.inactive_subscriptions) == (5, 0, 0)
    assert Subscription.objects.get(subscriber=world["sleeper2"], mailing_list__name="Untracked").is_confirmed
    assert sunset.daily() is None
    assert sunset.daily(now=timezone.now() + timedelta(days=1)).last_applied_count == 0


def test_off_does_nothing(world):
    SunsetPolicy.objects.create(pk=1, mode=SunsetPolicy.OFF)

    assert sunset.daily() is None
    assert (_unsubscribed(), sunset.current().counted_at) == ([], None)


def test_someone_who_opens_during_a_run_stays(world, monkeypatch):
    monkeypatch.setattr(sunset, "CHUNK", 2)
    late = world["stepper"]

    def opened_meanwhile(seen, changed):
        if seen == 2:
            _event(Message.objects.get(subscriber=late), Event.OPEN, ago=timedelta(0))

    changed = sunset.unsubscribe_inactive(6, on_chunk=opened_meanwhile)

    assert changed == 4
    assert "stepper@example.org" not in [row[0] for row in _unsubscribed()]


# --- The page, the button and its progress -----------------------------------------------------------------


def test_the_page_shows_the_count_and_admins_get_the_button(alice_client, world):
    sunset.count()

    page = alice_client.get(reverse("campaigns:sunset_policy"))

    assert page.status_code == 200
    assert ("<strong>5</strong> subscribers (5 subscriptions) received mail in the last 6 months and opened or "
            "clicked none of it.") in page.text
    assert f'action="{reverse("campaigns:sunset_run")}"' in page.text


def test_viewers_and_editors_read_but_cannot_change_or_run(victor_client, bob_client, world):
    sunset.count()
    page = victor_client.get(reverse("campaigns:sunset_policy"))
    assert page.status_code == 200 and "Only an admin can change the sunset policy or run it." in page.text
    assert 'name="months"' in page.text and "disabled" in page.text
    assert reverse("campaigns:sunset_run") not in page.text

    refused = victor_client.post(reverse("campaigns:sunset_policy"), {"mode": "apply", "months": "3"})

    assert refused.status_code == 302 and sunset.current().mode == SunsetPolicy.SUGGEST
    assert bob_client.post(reverse("campaigns:sunset_run")).status_code == 403
    assert bob_client.post(reverse("campaigns:sunset_count")).status_code == 403
    assert _unsubscribed() == []


def test_the_page_is_refused_without_a_role(mallory_client):
    assert mallory_client.get(reverse("campaigns:sunset_policy")).status_code == 403


def test_an_admin_changes_the_policy_and_it_is_counted_again(alice_client, world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("campaigns:sunset_policy"), {"mode": "suggest", "months": "9"})

    assert response.status_code == 302
    policy = sunset.current()
    assert (policy.months, policy.counted_months, policy.inactive_subscribers) == (9, 9, 4)
    invalid = alice_client.post(reverse("campaigns:sunset_policy"), {"mode": "suggest", "months": "0"})
    assert invalid.status_code == 200 and "Ensure this value is greater than or equal to 1." in invalid.text


def test_the_button_runs_in_the_background_with_progress(alice_client, world, django_capture_on_commit_callbacks):
    sunset.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(reverse("campaigns:sunset_run"))

    job_url = response["Location"]
    assert response.status_code == 302 and job_url.startswith(reverse("campaigns:sunset_policy") + "runs/")
    page = alice_client.get(job_url)
    assert "Unsubscribed 5 subscriptions of people who did not open or click in 6 months." in page.text
    assert "hx-trigger" not in page.text
    assert _unsubscribed() == [(email, "Newsletter", REASON) for email in INACTIVE]
    assert sunset.current().last_applied_count == 5


def test_the_progress_polls_while_waiting_and_a_second_press_joins_the_same_run(alice, alice_client, world):
    job_id = sunset.start_job(alice)  # not committed: the task is not rung

    partial = alice_client.get(reverse("campaigns:sunset_job", args=[job_id]), HTTP_HX_REQUEST="true")

    assert 'hx-trigger="every 1s"' in partial.text and "Waiting for the background worker" in partial.text
    assert sunset.start_job(alice) == job_id
    sunset.run_job(job_id)
    sunset.run_job(job_id)  # delivered twice: done once
    assert sunset.get_job(job_id)["changed"] == 5 and len(_unsubscribed()) == 5
    assert alice_client.get(reverse("campaigns:sunset_job", args=["nope"])).status_code == 404


def test_a_run_is_refused_while_the_policy_is_off(alice_client, world):
    SunsetPolicy.objects.create(pk=1, mode=SunsetPolicy.OFF)

    response = alice_client.post(reverse("campaigns:sunset_run"), follow=True)

    assert "The sunset policy is off. Choose Suggest or Apply, save, then run it." in response.text
    assert _unsubscribed() == []


# --- The overview, the settings hub, the admin -------------------------------------------------------------------


def test_the_overview_suggests_a_sunset_when_some_stopped_reading(victor_client, world):
    sunset.count()

    page = victor_client.get(reverse("home"))

    assert "<strong>5 subscribers have not opened or clicked in 6 months.</strong>" in page.text
    assert reverse("campaigns:sunset_policy") in page.text


def test_the_overview_says_nothing_when_the_policy_is_off(victor_client, world):
    SunsetPolicy.objects.create(pk=1, mode=SunsetPolicy.OFF, inactive_subscribers=5, counted_months=6,
                                counted_at=timezone.now())

    assert 'id="sunset-suggestion"' not in victor_client.get(reverse("home")).text


def test_the_settings_page_links_to_the_sunset_policy(victor_client):
    assert reverse("campaigns:sunset_policy") in victor_client.get(reverse("settings")).text


def test_the_admin_counts_and_switches_the_policy_off(admin_client, world):
    policy = sunset.current()
    url = reverse("admin:campaigns_sunsetpolicy_changelist")
    assert admin_client.get(url, {"mode": "suggest"}).status_code == 200
    assert admin_client.get(reverse("admin:campaigns_sunsetpolicy_change", args=[policy.pk])).status_code == 200

    admin_client.post(url, {"action": "count_now", "_selected_action": [policy.pk]})
    assert sunset.current().inactive_subscribers == 5
    admin_client.post(url, {"action": "switch_off", "_selected_action": [policy.pk]})

    assert sunset.current().mode == SunsetPolicy.OFF
