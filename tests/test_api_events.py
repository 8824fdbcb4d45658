"""The events endpoint: what happened to sent messages, queried by type, time, broadcast and subscriber."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import events
from campaigns.models import Broadcast, Event, Message
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import SubscriberFactory
from tests.sending_factories import BroadcastFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def sent():
    """Two sent messages of one broadcast, to ada and bob."""
    broadcast = BroadcastFactory(status=Broadcast.SENT)
    now = timezone.now() - timedelta(hours=1)
    ada, bob = SubscriberFactory(email="ada@example.org"), SubscriberFactory(email="bob@example.org")
    return broadcast, [
        Message.objects.create(broadcast=broadcast, subscriber=person, email=person.email, status=Message.SENT,
                               next_attempt_at=now, sent_at=now)
        for person in (ada, bob)
    ]


def _kinds(api, **query):
    response = api.get("/api/v1/events/", query)
    assert response.status_code == 200, response.json()
    return [(e["kind"], e["subscriber"]) for e in response.json()["results"]]


def test_events_are_queried_by_type_subscriber_broadcast_and_time(viewer_api, sent):
    broadcast, (to_ada, to_bob) = sent
    events.record(Event.OPEN, to_ada.pk, at=timezone.now() - timedelta(minutes=30))
    events.record(Event.BOUNCE, to_bob.pk, detail="550 5.1.1 no such user", at=timezone.now() - timedelta(minutes=20))
    events.record(Event.OPEN, to_bob.pk, is_machine=True)
    ada, bob = to_ada.subscriber_id, to_bob.subscriber_id

    assert _kinds(viewer_api) == [("bounce", bob), ("open", ada)]
    assert _kinds(viewer_api, kind="open") == [("open", ada)]
    assert _kinds(viewer_api, kind=["open", "bounce"], subscriber=bob) == [("bounce", bob)]
    assert _kinds(viewer_api, broadcast=broadcast.pk, include_machine="true") == [
        ("open", bob), ("bounce", bob), ("open", ada)]
    assert _kinds(viewer_api, broadcast=broadcast.pk + 1) == []
    since = (timezone.now() - timedelta(minutes=25)).isoformat()
    assert _kinds(viewer_api, created_after=since) == [("bounce", bob)]
    bounce = viewer_api.get("/api/v1/events/", {"kind": "bounce"}).json()["results"][0]
    assert (bounce["detail"], bounce["message"], bounce["scope"]) == ("550 5.1.1 no such user", to_bob.pk, "broadcast")


def test_an_unknown_event_type_is_400(viewer_api):
    response = viewer_api.get("/api/v1/events/", {"kind": "teleported"})

    assert response.status_code == 400
    assert list(response.json()) == ["kind"]


def test_events_are_refused_to_a_user_without_a_role(nobody_api, sent):
    assert nobody_api.get("/api/v1/events/").status_code == 403
