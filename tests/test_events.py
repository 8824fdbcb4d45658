"""Recording opens and clicks: the endpoints, the Redis buffer and its drain, scanners, uniques."""

from datetime import timedelta

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory

from autoresponder import tokens
from campaigns import composing, events, stats
from campaigns.fastpath import TrackingFastPath
from campaigns.models import Event, LinkStats, StatsBucket
from tests.tracking_fixtures import (  # noqa: F401
    click_path, events_table_locked, fresh_link_caches, open_path, sent_broadcast,
)

pytestmark = pytest.mark.django_db

HUMAN = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko)"


@pytest.fixture
def messages():
    return sent_broadcast(3)


def bucket_totals(message):
    rows = StatsBucket.objects.filter(scope="broadcast", scope_id=message.broadcast_id)
    return {name: sum(getattr(row, name) for row in rows) for name in stats.BUCKET_COUNTERS}


def stored(kind=None):
    rows = Event.objects.all()
    return rows.filter(kind=kind) if kind else rows


# --- Buffer and drain ------------------------------------------------------------------------------


def test_open_waits_in_the_buffer_until_the_drain_stores_it(messages, client):
    # when
    response = client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    # then: answered, buffered, not yet in Postgres
    assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    assert (events.pending(), stored().count()) == (1, 0)
    # when the beat task drains
    assert events.drain() == 1
    # then
    event = stored().get()
    assert (event.kind, event.message_id, event.scope, event.scope_id, event.source, event.is_machine) == (
        "open", messages[0].pk, "broadcast", messages[0].broadcast_id, "pixel", False)
    assert events.pending() == 0
    totals = bucket_totals(messages[0])
    assert (totals["opens"], totals["unique_opens"]) == (1, 1)


def test_click_is_stored_with_its_link_and_counted_per_link(messages, client):
    response = client.get(click_path(messages[0], "https://shop.example/spring"), HTTP_USER_AGENT=HUMAN)
    assert response.status_code == 302
    events.drain()
    event = stored("click").get()
    assert event.link.url == "https://shop.example/spring"
    link = LinkStats.objects.get(scope="broadcast", scope_id=messages[0].broadcast_id)
    assert (link.link_id, link.clicks, link.unique_clicks, link.machine_clicks) == (event.link_id, 1, 1, 0)


def test_repeated_opens_count_in_the_total_but_once_in_the_unique_figure(messages, client):
    # given: one open stored in an earlier drain
    client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    events.drain()
    # when: the same message opened twice more, another once, drained together
    for message in (messages[0], messages[0], messages[1]):
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    events.drain()
    # then
    totals = bucket_totals(messages[0])
    assert (totals["opens"], totals["unique_opens"]) == (4, 2)


def test_repeated_clicks_count_once_per_message_and_once_per_link(messages, client):
    for url in ("https://shop.example/a", "https://shop.example/a", "https://shop.example/b"):
        client.get(click_path(messages[0], url), HTTP_USER_AGENT=HUMAN)
    events.drain()
    totals = bucket_totals(messages[0])
    assert (totals["clicks"], totals["unique_clicks"]) == (3, 1)
    per_link = {row.link.url: (row.clicks, row.unique_clicks) for row in LinkStats.objects.select_related("link")}
    assert per_link == {"https://shop.example/a": (2, 1), "https://shop.example/b": (1, 1)}


def test_a_crash_between_taking_a_batch_and_storing_it_loses_nothing(messages, client):
    # given: five opens; a drainer moved three to its processing list, then died
    for message in messages + messages[:2]:
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    assert len(events.take(events.redis_client(), 3)) == 3
    # when: the next drain runs
    stored_now = events.drain()
    # then: all five are stored, none left behind
    assert (stored_now, stored().count(), events.pending()) == (5, 5, 0)
    assert bucket_totals(messages[0])["opens"] == 5


def test_a_crash_after_storing_but_before_clearing_the_batch_counts_it_once(messages, client):
    # given: a drainer stored a batch and died before dropping its processing list
    for message in messages:
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    client_ = events.redis_client()
    taken = events.take(client_, 10)
    events.ingest(events.parse_buffered(taken))
    # when: the next drain stores the same records again
    assert events.drain() == 0
    # then: stored and counted once
    assert stored().count() == 3
    totals = bucket_totals(messages[0])
    assert (totals["opens"], totals["unique_opens"]) == (3, 3)
    assert events.pending() == 0


def test_only_one_drainer_runs_at_a_time(messages, client):
    client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    events.redis_client().set(events.DRAIN_LOCK, "another-drainer", ex=60)
    assert events.drain() == 0
    assert (events.pending(), stored().count()) == (1, 0)


def test_without_a_buffer_a_hit_is_stored_at_once(messages, client, settings):
    settings.TRACKING_BUFFER = "direct"
    client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    assert stored("open").count() == 1
    assert bucket_totals(messages[0])["opens"] == 1


def test_an_unreachable_buffer_falls_back_to_storing_at_once(messages, client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    assert response.status_code == 200
    assert stored("open").count() == 1


def test_the_pixel_is_returned_even_when_recording_fails(messages, client, settings):
    # given: no buffer, and the events table locked by another session
    settings.TRACKING_BUFFER = "direct"
    with events_table_locked():
        # when
        response = client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    # then
    assert response.status_code == 200
    assert response.content.startswith(b"GIF89a")
    assert stored().count() == 0


# --- Tokens ---------------------------------------------------------------------------------------------


def test_a_tampered_or_wrong_purpose_token_records_nothing(messages, client):
    good = tokens.sign(composing.OPEN, messages[0].pk)
    tampered = good[:-2] + ("AA" if not good.endswith("AA") else "BB")
    click_token = tokens.sign(composing.CLICK, messages[0].pk, composing.link_pk("https://shop.example/"))
    for token in (tampered, click_token, tokens.sign(composing.UNSUBSCRIBE, messages[0].pk)):
        response = client.get(f"/o/{token}.gif")
        assert response.status_code == 200 and response.content.startswith(b"GIF89a")
    response = client.get(f"/c/{good}")
    assert response.status_code == 404 and "Location" not in response.headers
    assert events.pending() == 0


def test_a_replayed_open_token_is_another_open_of_the_same_message(messages, client):
    path = open_path(messages[0])
    client.get(path, HTTP_USER_AGENT=HUMAN)
    client.get(path, HTTP_USER_AGENT=HUMAN)
    events.drain()
    assert list(stored("open").values_list("message_id", flat=True)) == [messages[0].pk] * 2
    totals = bucket_totals(messages[0])
    assert (totals["opens"], totals["unique_opens"]) == (2, 1)


# --- Scanners ---------------------------------------------------------------------------------------------


def test_a_head_request_is_flagged_and_kept_out_of_human_counts(messages, client):
    response = client.head(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    assert response.status_code == 200
    events.drain()
    assert stored().get().is_machine is True
    totals = bucket_totals(messages[0])
    assert (totals["opens"], totals["unique_opens"], totals["machine_opens"]) == (0, 0, 1)


def test_a_scanner_user_agent_clicking_is_flagged(messages, client):
    response = client.get(click_path(messages[0]), HTTP_USER_AGENT="Barracuda Sentinel (EE)")
    assert response.status_code == 302
    events.drain()
    assert stored("click").get().is_machine is True
    totals = bucket_totals(messages[0])
    assert (totals["clicks"], totals["unique_clicks"], totals["machine_clicks"]) == (0, 0, 1)
    assert LinkStats.objects.get().machine_clicks == 1


def test_a_click_seconds_after_sending_is_a_scanner_one_an_hour_later_is_human(client):
    early = sent_broadcast(1, sent_ago=timedelta(seconds=1), prefix="early")[0]
    late = sent_broadcast(1, sent_ago=timedelta(hours=1), prefix="late")[0]
    for message in (early, late):
        client.get(click_path(message), HTTP_USER_AGENT=HUMAN)
    events.drain()
    assert dict(stored("click").values_list("message_id", "is_machine")) == {early.pk: True, late.pk: False}
    assert bucket_totals(early)["machine_clicks"] == 1
    assert bucket_totals(late)["unique_clicks"] == 1


# --- The fast path in front of Django ------------------------------------------------------------------


def call(app, method, path, **headers):
    """A WSGI call as gunicorn makes it (keeping the test's database connection open, as
    Django's test client does)."""
    environ = RequestFactory().generic(method, path, **headers).environ
    answer = {}

    def start_response(status, response_headers):
        answer["status"], answer["headers"] = status, dict(response_headers)

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        body = b"".join(app(environ, start_response))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return answer["status"], answer["headers"], body


@pytest.fixture
def fast_app():
    return TrackingFastPath(WSGIHandler())


def test_fast_path_answers_the_pixel_and_buffers_the_open(messages, fast_app):
    status, headers, body = call(fast_app, "GET", open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    assert (status, headers["Content-Type"], body[:6]) == ("200 OK", "image/gif", b"GIF89a")
    assert "no-store" in headers["Cache-Control"]
    assert events.drain() == 1
    assert stored("open").get().message_id == messages[0].pk


def test_fast_path_redirects_a_click_to_the_stored_link(messages, fast_app):
    status, headers, body = call(fast_app, "GET", click_path(messages[0], "https://shop.example/ü?a=1"))
    assert (status, headers["Location"], body) == ("302 Found", "https://shop.example/%C3%BC?a=1", b"")
    assert events.drain() == 1


def test_fast_path_leaves_an_unknown_link_to_django_which_answers_404(messages, fast_app):
    token = tokens.sign(composing.CLICK, messages[0].pk, 999_999)
    status, headers, _ = call(fast_app, "GET", f"/c/{token}")
    assert status.startswith("404") and "Location" not in headers
    assert events.pending() == 0


def test_fast_path_head_request_has_no_body_and_is_flagged(messages, fast_app):
    status, _, body = call(fast_app, "HEAD", open_path(messages[0]))
    assert (status, body) == ("200 OK", b"")
    events.drain()
    assert stored().get().is_machine is True


# --- The per-process buffer of a web process ---------------------------------------------------------


def test_hits_wait_in_the_process_until_flushed_in_one_push(messages, client, settings):
    # given: the production setting
    settings.TRACKING_FLUSH_MS = 100
    # when
    for message in messages:
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    # then: in the process's buffer (or already pushed by its thread), counted as pending
    assert events.pending() == 3
    events.flush()
    assert (len(events._local), events.redis_client().llen(events.QUEUE)) == (0, 3)
    assert events.drain() == 3


def test_the_flusher_thread_pushes_hits_within_a_moment(messages, client, settings):
    import time

    settings.TRACKING_FLUSH_MS = 50
    client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    deadline = time.monotonic() + 5
    while events.redis_client().llen(events.QUEUE) == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert events.redis_client().llen(events.QUEUE) == 1
    assert events.drain() == 1


def test_generated_uids_are_unique_and_valid():
    import uuid

    uids = {events._next_uid() for _ in range(10_000)}
    assert len(uids) == 10_000
    assert all(uuid.UUID(hex=uid).hex == uid for uid in list(uids)[:100])


# --- Unsubscribes and REST hooks ------------------------------------------------------------------------


def test_one_click_unsubscribe_records_one_event_however_often_it_is_posted(messages, client_class):
    client = client_class(enforce_csrf_checks=True)
    url = composing.unsubscribe_url(messages[0].pk).removeprefix("http://testserver")
    for _ in range(2):
        assert client.post(url, {"List-Unsubscribe": "One-Click"}).status_code == 200
    event = stored("unsubscribe").get()
    assert (event.message_id, event.source) == (messages[0].pk, "one-click")
    assert bucket_totals(messages[0])["unsubscribed"] == 1


def test_new_opens_clicks_and_bounces_reach_the_rest_hooks_that_want_them(messages, client, alice):
    from campaigns import hooks, policy
    from campaigns.models import HookDelivery

    # given: hooks for opens, clicks and bounces
    for event in ("message.opened", "message.clicked", "message.bounced"):
        hooks.subscribe(event=event, target=f"http://127.0.0.1:9/{event}", owner=alice)
    # when: a human open, a scanner open, a click and a hard bounce
    client.get(open_path(messages[0]), HTTP_USER_AGENT=HUMAN)
    client.head(open_path(messages[1]), HTTP_USER_AGENT=HUMAN)
    client.get(click_path(messages[0], "https://shop.example/spring"), HTTP_USER_AGENT=HUMAN)
    events.drain()
    policy.feedback(Event.BOUNCE, message=messages[2], uid=events.event_uid("hook-test"), source="test",
                    detail="550 5.1.1 no such user")
    # then: one delivery each; the scanner's open is not announced
    bodies = {d.event: d.body["data"] for d in HookDelivery.objects.all()}
    assert sorted(bodies) == ["message.bounced", "message.clicked", "message.opened"]
    assert bodies["message.opened"]["message"]["id"] == messages[0].pk
    assert bodies["message.opened"]["subscriber"]["email"] == messages[0].email
    assert bodies["message.clicked"]["url"] == "https://shop.example/spring"
    assert bodies["message.bounced"]["detail"] == "550 5.1.1 no such user"


def test_drain_events_command_reports_the_counts(messages, client):
    from io import StringIO

    from django.core.management import call_command

    for message in messages:
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    out = StringIO()
    call_command("drain_events", stdout=out)
    assert out.getvalue().strip() == "3 waiting, 3 stored; 0 still waiting."
