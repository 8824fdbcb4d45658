"""The counts that take seconds at a million: a broadcast's recipients on the send step and a
segment's matches in its editor load after the page (htmx), are kept a minute per definition
(lists.counting), and are counted afresh when the definition is edited or on request."""

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from campaigns.models import Broadcast
from lists import counting
from lists.models import Segment, Subscriber, Subscription, Suppression
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, SMTPBackendFactory, audience

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def news():
    """Three confirmed readers; one unsubscribed, one unconfirmed, one suppressed (by an address
    in capitals), one blocklisted: three recipients."""
    news = MailingListFactory(name="News")
    audience(news, 3)
    SubscriptionFactory(mailing_list=news, subscriber__email="left@example.org", status=Subscription.UNSUBSCRIBED)
    SubscriptionFactory(mailing_list=news, subscriber__email="later@example.org", status=Subscription.UNCONFIRMED)
    SubscriptionFactory(mailing_list=news, subscriber__email="Bounced@Example.org", status=Subscription.CONFIRMED)
    Suppression.objects.create(email="bounced@example.org", reason=Suppression.HARD_BOUNCE)
    SubscriptionFactory(mailing_list=news, subscriber__email="spam@example.org", status=Subscription.CONFIRMED,
                        subscriber__status=Subscriber.BLOCKLISTED)
    return news


@pytest.fixture
def relay():
    return SMTPBackendFactory(name="Relay", price_per_thousand=Decimal("1000"))


@pytest.fixture
def draft(news, relay):
    return BroadcastFactory(name="Launch", sender=SenderFactory(), lists=[news])


def count_url(broadcast, **query):
    url = reverse("campaigns:broadcast_count", args=[broadcast.pk])
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def subscriber_counts(queries):
    return [q["sql"] for q in queries if "COUNT(" in q["sql"] and '"lists_subscriber"' in q["sql"]]


def edit_post(broadcast, lists, segment=""):
    return {
        "name": broadcast.name, "sender": str(broadcast.sender_id), "subject": broadcast.subject,
        "body_format": "html", "body": BODY, "text_body": "", "layout": "", "lists": [str(pk) for pk in lists],
        "segment": str(segment), "backend": "", "track_opens": "on", "track_clicks": "on",
    }


# --- The send step ------------------------------------------------------------------------------


def test_the_send_step_renders_without_counting_and_asks_for_the_count(bob_client, draft):
    with CaptureQueriesContext(connection) as queries:
        response = bob_client.get(reverse("campaigns:broadcast_send", args=[draft.pk]))

    assert response.status_code == 200
    assert subscriber_counts(queries) == []
    assert f'hx-get="{count_url(draft)}" hx-trigger="load"' in response.text
    assert '<div class="value" id="recipients">Counting…</div>' in response.text
    assert 'Send now<span id="send-count"></span></button>' in response.text


def test_the_count_partial_shows_the_exact_recipients_and_cost(bob_client, draft):
    response = bob_client.get(count_url(draft), HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert (response.context["recipients"], response.context["cost"]) == (3, Decimal("3.00"))
    assert '<div class="value" id="recipients">3</div>' in response.text
    assert '<span id="send-count" hx-swap-oob="true"> to 3 subscribers</span>' in response.text
    assert "<html" not in response.text


def test_the_count_is_kept_a_minute_and_counted_again_on_request(bob_client, draft, news):
    first = bob_client.get(count_url(draft))
    audience(news, 2, prefix="newcomer")

    with CaptureQueriesContext(connection) as queries:
        kept = bob_client.get(count_url(draft))
    fresh = bob_client.get(count_url(draft, fresh=1))

    assert subscriber_counts(queries) == []
    assert kept.context["recipients"] == 3 and kept.context["counted_at"] == first.context["counted_at"]
    assert fresh.context["recipients"] == 5 and fresh.context["counted_at"] > first.context["counted_at"]
    assert (fresh.context["cost"], bob_client.get(count_url(draft)).context["recipients"]) == (Decimal("5.00"), 5)


def test_editing_the_broadcasts_lists_counts_afresh(bob_client, draft, news):
    assert bob_client.get(count_url(draft)).context["recipients"] == 3
    extra = MailingListFactory(name="Extra")
    audience(extra, 2, prefix="extra")
    SubscriptionFactory(mailing_list=extra, subscriber=Subscriber.objects.get(email="reader0@example.org"),
                        status=Subscription.CONFIRMED)  # on both lists: counted once

    response = bob_client.post(reverse("campaigns:broadcast_edit", args=[draft.pk]), edit_post(draft, [news.pk, extra.pk]))

    assert response.status_code == 302
    assert bob_client.get(count_url(draft)).context["recipients"] == 5


def test_editing_the_segment_of_a_broadcast_counts_afresh(bob_client, alice_client, draft, news):
    segment = Segment.objects.create(name="Readers", conditions=[{"field": "email", "op": "starts_with", "value": "reader"}])
    Broadcast.objects.filter(pk=draft.pk).update(segment=segment)
    assert bob_client.get(count_url(draft)).context["recipients"] == 3

    bob_client.post(reverse("lists:segment_edit", args=[segment.pk]), {
        "name": "Readers", "match": "all", "field": ["email"], "key": [""], "op": ["is"],
        "value": ["reader1@example.org"], "list": [""], "tag": [""]})

    assert Segment.objects.get(pk=segment.pk).conditions == [
        {"field": "email", "op": "is", "value": "reader1@example.org"}]
    assert bob_client.get(count_url(draft)).context["recipients"] == 1


def test_the_composer_and_the_send_step_share_one_count(bob_client, draft, news):
    bob_client.get(count_url(draft))
    audience(news, 1, prefix="newcomer")

    composer = bob_client.post(reverse("campaigns:compose_count"), edit_post(draft, [news.pk]))

    assert composer.context["recipients"] == 3


def test_a_broadcast_without_lists_or_segment_is_not_counted(bob_client, relay):
    broadcast = BroadcastFactory(name="Nowhere", sender=SenderFactory())

    with CaptureQueriesContext(connection) as queries:
        response = bob_client.get(count_url(broadcast))

    assert subscriber_counts(queries) == []
    assert "No recipients yet: edit the broadcast and choose at least one list or a segment." in response.text
    assert "send-count" not in response.text


def test_only_editors_may_count(mallory_client, victor_client, bob_client, alice_client, draft):
    url = count_url(draft)

    assert Client().get(url).status_code == 302
    assert mallory_client.get(url).status_code == 403
    assert victor_client.get(url, {"fresh": "1"}).status_code == 403
    assert (bob_client.get(url).status_code, alice_client.get(url).status_code) == (200, 200)


# --- The segment editor ------------------------------------------------------------------------


def segment_post(value, op="ends_with", **extra):
    return {"name": "", "match": "all", "field": ["email"], "key": [""], "op": [op], "value": [value],
            "list": [""], "tag": [""], "preview": "1", **extra}


def test_the_segment_editor_renders_without_counting(bob_client, news):
    segment = Segment.objects.create(name="Org", conditions=[{"field": "email", "op": "ends_with", "value": ".org"}])

    with CaptureQueriesContext(connection) as queries:
        response = bob_client.get(reverse("lists:segment_edit", args=[segment.pk]))

    assert response.status_code == 200
    assert subscriber_counts(queries) == []
    assert '<div id="segment-preview"><p class="hint">Counting…</p></div>' in response.text
    assert 'hx-sync="this:replace"' in response.text


def test_the_segment_count_is_exact_and_kept_until_the_conditions_change(bob_client, news):
    url = reverse("lists:segment_create")
    first = bob_client.post(url, segment_post("@example.org"), HTTP_HX_REQUEST="true")
    audience(news, 1, prefix="newcomer")

    kept = bob_client.post(url, segment_post("@example.org"), HTTP_HX_REQUEST="true")
    changed = bob_client.post(url, segment_post("example.org"), HTTP_HX_REQUEST="true")

    # every subscriber of the fixture: the segment editor counts people, not recipients
    assert "<strong>7</strong> subscribers match." in first.text
    assert "Newest: spam@example.org, Bounced@Example.org, later@example.org, left@example.org, reader2@example.org" \
        in first.text
    assert "<strong>7</strong> subscribers match." in kept.text
    assert "<strong>8</strong> subscribers match." in changed.text
    assert "Newest: newcomer0@example.org, spam@example.org" in changed.text


def test_a_segment_count_of_invalid_conditions_says_what_to_fix(bob_client, news):
    response = bob_client.post(reverse("lists:segment_create"), segment_post("", op="contains"),
                               HTTP_HX_REQUEST="true")

    assert "Fix the conditions to see who matches:" in response.text
    assert "Condition 1: Enter a value to compare with." in response.text


def test_the_newest_examples_are_the_same_by_walk_and_by_ids(news, monkeypatch):
    found = Subscriber.objects.filter(email__endswith="@example.org")
    newest = list(found.order_by("-pk").values_list("email", flat=True)[:5])

    monkeypatch.setattr(counting, "WALK_MIN", 0)
    by_walk = counting.newest_emails(found, found.count())
    monkeypatch.setattr(counting, "WALK_MIN", 1000)
    by_ids = counting.newest_emails(found, found.count())

    assert by_walk == by_ids == newest and len(newest) == 5
    assert counting.newest_emails(found.none(), 0) == []
