"""Privacy: per-list switches for open and click tracking, and the aggregate-only mode."""

import pytest

from campaigns import composing, events, policy, stats
from campaigns.composing import Job
from campaigns.models import Broadcast, Event, LinkStats
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience
from tests.tracking_fixtures import click_path, fresh_link_caches, open_path, sent_broadcast  # noqa: F401

pytestmark = pytest.mark.django_db

HUMAN = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"


def rendered_for(*lists):
    subscriber = audience(lists[0], 1, prefix=f"p{lists[0].pk}")[0]
    broadcast = BroadcastFactory(lists=list(lists))
    return Job.for_broadcast(broadcast).render(1, subscriber)[1].html


def test_a_list_without_open_tracking_gets_no_pixel_but_tracked_links():
    html = rendered_for(MailingListFactory(name="Quiet", track_opens=False))
    assert "/o/" not in html
    assert "http://testserver/c/" in html


def test_a_list_without_click_tracking_keeps_its_links_as_written():
    html = rendered_for(MailingListFactory(name="Plain", track_clicks=False))
    assert 'href="https://shop.example/blog"' in html and "/c/" not in html
    assert "http://testserver/o/" in html


def test_a_broadcast_to_several_lists_tracks_only_what_every_list_allows():
    html = rendered_for(MailingListFactory(name="Open"), MailingListFactory(name="Quiet", track_opens=False))
    assert "/o/" not in html
    assert "http://testserver/c/" in html


def test_tracking_is_on_by_default():
    html = rendered_for(MailingListFactory(name="Default"))
    assert "http://testserver/o/" in html and "http://testserver/c/" in html


# --- Aggregate-only lists -------------------------------------------------------------------------------


@pytest.fixture
def private_messages():
    return sent_broadcast(2, privacy_mode=True)


def test_aggregate_only_opens_and_clicks_are_counted_without_their_message(private_messages, client):
    # when
    for message in (private_messages[0], private_messages[0], private_messages[1]):
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    client.get(click_path(private_messages[0], "https://shop.example/a"), HTTP_USER_AGENT=HUMAN)
    events.drain()
    # then: nothing ties an open or a click to a message (and so to a subscriber)
    stored = list(Event.objects.values_list("kind", "message_id", "scope", "scope_id"))
    broadcast_id = private_messages[0].broadcast_id
    assert sorted(stored) == sorted([("open", None, "broadcast", broadcast_id)] * 3
                                    + [("click", None, "broadcast", broadcast_id)])
    figures = stats.broadcast_stats(Broadcast.objects.get(pk=broadcast_id))
    assert (figures["aggregate_only"], figures["opens"], figures["unique_opens"], figures["clicks"]) == (True, 3, None, 1)
    assert figures["rates"]["open"] is None
    assert list(LinkStats.objects.values_list("clicks", "unique_clicks")) == [(1, 0)]


def test_aggregate_only_still_keeps_bounces_and_unsubscribes_with_their_message(private_messages, client):
    policy.feedback(Event.BOUNCE, message=private_messages[0], uid=events.event_uid("p", 1), source="test")
    client.post(composing.unsubscribe_url(private_messages[1].pk).removeprefix("http://testserver"),
                {"List-Unsubscribe": "One-Click"})
    assert sorted(Event.objects.values_list("kind", "message_id")) == [
        ("bounce", private_messages[0].pk), ("unsubscribe", private_messages[1].pk)]


def test_the_scanner_check_still_applies_in_aggregate_only_mode(private_messages, client):
    client.head(open_path(private_messages[0]), HTTP_USER_AGENT=HUMAN)
    events.drain()
    assert list(Event.objects.values_list("is_machine", "message_id")) == [(True, None)]
    assert stats.totals("broadcast", private_messages[0].broadcast_id)["machine_opens"] == 1
