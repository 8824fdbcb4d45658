"""A subscriber's page shows their activity: messages sent and what happened to them, newest first."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.activity import timeline
from campaigns.models import Event, Link, Message
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BroadcastFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def ada():
    return SubscriptionFactory(subscriber__email="ada@example.org", mailing_list=MailingListFactory()).subscriber


def _message(subscriber, broadcast, *, status=Message.SENT, minutes_ago=60, response=""):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return Message.objects.create(broadcast=broadcast, subscriber=subscriber, email=subscriber.email, status=status,
                                  next_attempt_at=at, sent_at=at if status == Message.SENT else None,
                                  last_response=response)


def _event(message, kind, *, minutes_ago, link=None, machine=False):
    return Event.objects.create(uid=uuid.uuid4(), kind=kind, message=message, scope="broadcast",
                                scope_id=message.broadcast_id if message else None, link=link, is_machine=machine,
                                created_at=timezone.now() - timedelta(minutes=minutes_ago))


def test_the_timeline_lists_messages_and_their_events_newest_first(ada):
    spring = BroadcastFactory(name="Spring sale")
    message = _message(ada, spring, minutes_ago=60)
    link = Link.objects.create(url="https://shop.example/spring", url_hash="a" * 64)
    _event(message, Event.OPEN, minutes_ago=50)
    _event(message, Event.CLICK, minutes_ago=40, link=link)
    _event(message, Event.OPEN, minutes_ago=45, machine=True)  # a link scanner: left out
    _event(None, Event.OPEN, minutes_ago=30)  # aggregate-only: not tied to anyone

    entries = timeline(ada)

    assert [(e.kind, e.what) for e in entries] == [
        ("click", "Spring sale"), ("open", "Spring sale"), ("sent", "Spring sale")]
    assert entries[0].detail == "https://shop.example/spring"
    assert entries[0].url == f"/broadcasts/{spring.pk}/"


def test_a_failed_message_shows_the_servers_answer(ada):
    _message(ada, BroadcastFactory(name="Autumn"), status=Message.FAILED, response="550 5.1.1 no such user")

    [entry] = timeline(ada)

    assert (entry.kind, entry.label, entry.detail) == ("failed", "Failed", "550 5.1.1 no such user")


def test_other_subscribers_activity_stays_out(ada):
    grace = SubscriptionFactory(subscriber__email="grace@example.org").subscriber
    _event(_message(grace, BroadcastFactory()), Event.OPEN, minutes_ago=5)
    assert timeline(ada) == []


def test_the_subscriber_page_shows_the_activity(victor_client, ada):
    message = _message(ada, BroadcastFactory(name="Spring <sale>"))
    _event(message, Event.BOUNCE, minutes_ago=10)

    html = victor_client.get(f"/subscribers/{ada.pk}/").content.decode()

    assert '<h2 id="activity-h">Activity</h2>' in html
    assert '<span class="badge danger">Hard bounce</span>' in html
    assert "Spring &lt;sale&gt;" in html


def test_the_subscriber_page_says_when_nothing_was_sent(victor_client, ada):
    assert "No messages sent to this subscriber yet." in victor_client.get(f"/subscribers/{ada.pk}/").content.decode()
