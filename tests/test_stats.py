"""The figures: exact counts from the rollups, rates, hourly series, clicks per link, recount."""

from datetime import datetime, timedelta, timezone as dt_timezone

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns import composing, events, stats
from campaigns.models import Broadcast, Event
from tests.tracking_fixtures import click_path, fresh_link_caches, open_path, sent_broadcast  # noqa: F401

pytestmark = pytest.mark.django_db

HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0"


def feedback(kind, message, n=0):
    from campaigns import policy

    policy.feedback(kind, message=message, uid=events.event_uid("stats-test", kind, message.pk, n), source="test")


@pytest.fixture
def report(client):
    """Four messages: three delivered, one bounced; opens, clicks, a complaint, an unsubscribe."""
    messages = sent_broadcast(4)
    for message in messages[:3]:
        feedback(Event.DELIVERED, message)
    feedback(Event.BOUNCE, messages[3])
    feedback(Event.COMPLAINT, messages[2])
    client.post(composing.unsubscribe_url(messages[1].pk).removeprefix("http://testserver"),
                {"List-Unsubscribe": "One-Click"})
    for message in (messages[0], messages[0], messages[1]):
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    client.head(open_path(messages[2]), HTTP_USER_AGENT=HUMAN)
    for message, url in ((messages[0], "https://shop.example/a"), (messages[0], "https://shop.example/a"),
                         (messages[0], "https://shop.example/b"), (messages[1], "https://shop.example/a")):
        client.get(click_path(message, url), HTTP_USER_AGENT=HUMAN)
    events.drain()
    return Broadcast.objects.get(pk=messages[0].broadcast_id)


def test_broadcast_figures_are_exact(report):
    figures = stats.broadcast_stats(report)
    picked = {name: figures[name] for name in (
        "sent", "delivered", "delivered_is_estimate", "bounced", "soft_bounced", "complained", "unsubscribed",
        "opens", "unique_opens", "machine_opens", "clicks", "unique_clicks", "machine_clicks", "unknown",
        "failed", "aggregate_only",
    )}
    assert picked == {
        "sent": 4, "delivered": 3, "delivered_is_estimate": False, "bounced": 1, "soft_bounced": 0,
        "complained": 1, "unsubscribed": 1, "opens": 3, "unique_opens": 2, "machine_opens": 1, "clicks": 4,
        "unique_clicks": 2, "machine_clicks": 0, "unknown": 0, "failed": 0, "aggregate_only": False,
    }
    assert figures["rates"] == {
        "delivery": 0.75, "bounce": 0.25, "complaint": 0.25, "unsubscribe": 0.3333, "open": 0.6667,
        "click": 0.6667, "click_to_open": 1.0,
    }


def test_clicks_per_link_most_clicked_first(report):
    assert stats.link_clicks("broadcast", report.pk) == [
        {"url": "https://shop.example/a", "clicks": 3, "unique_clicks": 2, "machine_clicks": 0},
        {"url": "https://shop.example/b", "clicks": 1, "unique_clicks": 1, "machine_clicks": 0},
    ]


def test_reading_the_figures_never_counts_event_rows(report):
    with CaptureQueriesContext(connection) as queries:
        stats.broadcast_stats(report)
        stats.timeseries("broadcast", report.pk)
        stats.link_clicks("broadcast", report.pk)
    assert len(queries) <= 5
    assert not any("campaigns_event" in query["sql"] for query in queries)


def test_a_recount_from_the_events_gives_the_same_figures(report):
    before = (stats.broadcast_stats(report), stats.link_clicks("broadcast", report.pk))
    assert stats.rebuild("broadcast", report.pk) >= 1
    assert (stats.broadcast_stats(report), stats.link_clicks("broadcast", report.pk)) == before


def test_without_delivery_reports_delivered_is_sent_minus_bounces():
    messages = sent_broadcast(5)
    feedback(Event.BOUNCE, messages[0])
    feedback(Event.SOFT_BOUNCE, messages[1])
    figures = stats.broadcast_stats(Broadcast.objects.get(pk=messages[0].broadcast_id))
    assert (figures["delivered"], figures["delivered_is_estimate"], figures["rates"]["delivery"]) == (3, True, 0.6)


def test_hourly_series_fills_the_quiet_hours_with_zeros():
    message = sent_broadcast(1)[0]
    nine = datetime(2024, 5, 14, 9, 15, tzinfo=dt_timezone.utc)
    for minutes in (0, 20, 180):
        events.record(Event.OPEN, message.pk, at=nine + timedelta(minutes=minutes))
    series = stats.timeseries("broadcast", message.broadcast_id)
    assert [(row["hour"].hour, row["opens"], row["unique_opens"]) for row in series] == [
        (9, 2, 1), (10, 0, 0), (11, 0, 0), (12, 1, 0)]


def test_a_step_is_counted_under_its_own_scope():
    at = datetime(2024, 5, 14, 9, 0, tzinfo=dt_timezone.utc)
    events.ingest([
        events.Record(uid=events.event_uid("step-test", n), kind=Event.OPEN, at=at, scope="step", scope_id=77)
        for n in range(3)
    ])
    stats.add_sent("step", 77, 10, at=at)
    figures = stats.step_stats(77)
    assert (figures["sent"], figures["opens"], figures["unique_opens"]) == (10, 3, 0)
    assert stats.totals("broadcast", 77)["opens"] == 0


def test_an_empty_broadcast_has_zeros_and_no_rates():
    broadcast = Broadcast.objects.get(pk=sent_broadcast(1)[0].broadcast_id)
    Broadcast.objects.filter(pk=broadcast.pk).update(sent_count=0)
    broadcast.refresh_from_db()
    figures = stats.broadcast_stats(broadcast)
    assert (figures["sent"], figures["opens"], figures["rates"]["open"]) == (0, 0, None)
    assert stats.timeseries("broadcast", broadcast.pk) == []


def test_a_sequence_steps_figures_come_from_its_own_messages(smtp_server, client):
    from campaigns import step_sending
    from campaigns.models import Message
    from tests.sending_factories import backend_for
    from tests.sequence_helpers import T0, build, people, run

    # given: a one-step sequence sent to three people through the real pipeline
    backend_for(smtp_server)
    sequence = build(steps=((0, "days"),))
    people(sequence.mailing_list, 3)
    run(T0, sequence)
    step = sequence.steps.get()
    step_sending.send_batch(step.pk)
    first, second = Message.objects.filter(step=step).order_by("pk")[:2]
    Message.objects.filter(step=step).update(sent_at=T0)  # sent long before the opens: not scanners
    # when: one opens twice, another once, and one bounces
    for message in (first, first, second):
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    events.drain()
    feedback(Event.BOUNCE, Message.objects.order_by("-pk").first())
    # then
    figures = stats.step_stats(step.pk)
    assert (figures["sent"], figures["opens"], figures["unique_opens"], figures["bounced"]) == (3, 3, 2, 1)
    assert figures["rates"]["open"] == round(2 / 2, 4)  # delivered estimate: 3 sent - 1 bounced
