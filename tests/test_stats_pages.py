"""Where the figures show: the broadcast page's report, the admin, and the beat tasks."""

import pytest
from django.contrib.auth import get_user_model

from campaigns import events, tasks
from campaigns.models import BouncePolicy, Event, LinkStats, StatsBucket
from tests.tracking_fixtures import click_path, fresh_link_caches, open_path, sent_broadcast  # noqa: F401

pytestmark = pytest.mark.django_db

HUMAN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0"


@pytest.fixture
def tracked(client):
    messages = sent_broadcast(3)
    for message in messages[:2]:
        client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    client.get(click_path(messages[0], "https://shop.example/spring-sale"), HTTP_USER_AGENT=HUMAN)
    events.drain()
    return messages


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_the_broadcast_page_shows_opens_clicks_and_links(tracked, victor_client):
    body = victor_client.get(f"/broadcasts/{tracked[0].broadcast_id}/").content.decode()
    assert "Deliveries, opens and clicks" in body
    assert '<div class="value">2</div><div class="label">Opened · 66.7%</div>' in body
    assert '<div class="value">1</div><div class="label">Clicked · 33.3%, 50.0% of openers</div>' in body
    assert "https://shop.example/spring-sale" in body
    assert f'id="broadcast-{tracked[0].broadcast_id}-activity"' in body
    assert "js/charts.js" in body


def test_the_drain_task_stores_buffered_hits(client):
    message = sent_broadcast(1)[0]
    client.get(open_path(message), HTTP_USER_AGENT=HUMAN)
    tasks.drain_events()
    assert (Event.objects.count(), events.pending()) == (1, 0)


def test_the_mailbox_task_does_nothing_without_a_mailbox(settings):
    settings.BOUNCE_MAILBOX_URL = ""
    tasks.read_bounce_mailbox()
    assert Event.objects.count() == 0


# --- Admin ---------------------------------------------------------------------------------------


def test_admin_lists_events_with_filters_and_refuses_to_add_one(tracked, admin_client):
    assert admin_client.get("/admin/campaigns/event/?kind__exact=open").status_code == 200
    assert admin_client.get("/admin/campaigns/event/?q=reader0@example.org").status_code == 200
    assert admin_client.get("/admin/campaigns/event/add/").status_code == 403


def test_admin_recount_action_rebuilds_the_rollups(tracked, admin_client):
    # given: the rollups were lost
    StatsBucket.objects.all().delete()
    LinkStats.objects.all().delete()
    # when
    response = admin_client.post("/admin/campaigns/event/", {
        "action": "recount", "_selected_action": list(Event.objects.values_list("pk", flat=True)),
    }, follow=True)
    # then
    assert "Recounted 1 broadcast(s) and step(s)." in response.content.decode()
    assert sum(StatsBucket.objects.values_list("unique_opens", flat=True)) == 2
    assert list(LinkStats.objects.values_list("clicks", "unique_clicks")) == [(1, 1)]


def test_admin_lists_rollups_and_link_statistics(tracked, admin_client):
    assert admin_client.get("/admin/campaigns/statsbucket/?scope__exact=broadcast").status_code == 200
    assert admin_client.get("/admin/campaigns/linkstats/?q=spring").status_code == 200


def test_admin_bounce_policy_reset_action(admin_client):
    BouncePolicy.objects.create(pk=1, soft_bounce_limit=9, hard_bounce_suppresses=False)
    admin_client.post("/admin/campaigns/bouncepolicy/", {"action": "reset_to_defaults", "_selected_action": [1]})
    row = BouncePolicy.objects.get(pk=1)
    assert (row.soft_bounce_limit, row.hard_bounce_suppresses) == (3, True)
    assert admin_client.get("/admin/campaigns/bouncepolicy/add/").status_code == 403
