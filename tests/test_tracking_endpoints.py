"""The public per-message endpoints: one-click unsubscribe, click redirect, open pixel, view in browser."""

import pytest
from django.utils import timezone

from autoresponder import tokens
from campaigns import composing, ledger
from campaigns.models import Broadcast, Link
from lists.models import Subscription
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience

pytestmark = pytest.mark.django_db


@pytest.fixture
def message():
    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, 2)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING)
    ledger.fan_out(broadcast, send_at=timezone.now())
    return broadcast.messages.order_by("pk").first()


def path_of(url):
    return url.removeprefix("http://testserver")


def subscription_status(message):
    return Subscription.objects.get(subscriber=message.subscriber).status


def test_one_click_post_unsubscribes_without_cookie_or_csrf_token(message, client_class):
    # given: a mail app posting RFC 8058's body, with CSRF checks on
    client = client_class(enforce_csrf_checks=True)
    url = path_of(composing.unsubscribe_url(message.pk))
    # when
    response = client.post(url, {"List-Unsubscribe": "One-Click"})
    # then
    assert response.status_code == 200
    assert "Location" not in response.headers
    assert subscription_status(message) == "unsubscribed"
    subscription = Subscription.objects.get(subscriber=message.subscriber)
    assert subscription.unsubscribe_reason == "One-click unsubscribe (List-Unsubscribe-Post)"
    assert subscription.unsubscribed_at is not None


def test_one_click_post_twice_answers_200_both_times(message, client):
    url = path_of(composing.unsubscribe_url(message.pk))
    first = client.post(url, {"List-Unsubscribe": "One-Click"})
    unsubscribed_at = Subscription.objects.get(subscriber=message.subscriber).unsubscribed_at
    second = client.post(url, {"List-Unsubscribe": "One-Click"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert Subscription.objects.get(subscriber=message.subscriber).unsubscribed_at == unsubscribed_at


def test_unsubscribe_get_shows_confirm_form_and_changes_nothing(message, client):
    response = client.get(path_of(composing.unsubscribe_url(message.pk)))
    assert response.status_code == 200
    body = response.content.decode()
    assert '<form method="post">' in body and "Unsubscribe me" in body
    assert "reader0@example.org" in body
    from lists.tokens import preferences_url

    assert f'<a href="{preferences_url(message.subscriber)}">choose which mail you get</a>' in body
    assert subscription_status(message) == "confirmed"


def test_unsubscribe_with_a_tampered_token_is_refused_and_changes_nothing(message, client):
    token = tokens.sign(composing.UNSUBSCRIBE, message.pk)
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    response = client.post(f"/u/{forged}", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert subscription_status(message) == "confirmed"


def test_a_click_token_cannot_unsubscribe(message, client):
    link = Link.objects.create(url="https://shop.example/", url_hash="a" * 64)
    token = tokens.sign(composing.CLICK, message.pk, link.pk)
    response = client.post(f"/u/{token}", {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 404
    assert subscription_status(message) == "confirmed"


def test_unsubscribe_stops_the_pending_message_of_that_subscriber(message, client, smtp_server):
    from campaigns import sending
    from tests.sending_factories import backend_for

    # given: the broadcast is sending; reader0 unsubscribes before their batch is claimed
    backend_for(smtp_server)
    client.post(path_of(composing.unsubscribe_url(message.pk)), {"List-Unsubscribe": "One-Click"})
    # when
    sending.send_batch(message.broadcast_id)
    # then
    message.refresh_from_db()
    assert message.status == "skipped"
    assert [m.rcpt_tos for m in smtp_server.messages] == [["reader1@example.org"]]


def test_click_redirects_to_the_stored_link(message, client):
    url = path_of(composing.click_url(message.pk, composing.link_pk("https://shop.example/spring?x=1&y=2")))
    response = client.get(url)
    assert response.status_code == 302
    assert response.headers["Location"] == "https://shop.example/spring?x=1&y=2"


def test_click_with_unknown_link_or_tampered_token_is_404_without_location(message, client):
    unknown = tokens.sign(composing.CLICK, message.pk, 999_999)
    for token in (unknown, "not-a-token", tokens.sign(composing.OPEN, message.pk)):
        response = client.get(f"/c/{token}")
        assert response.status_code == 404
        assert "Location" not in response.headers


def test_open_pixel_is_always_a_gif(message, client):
    for token in (tokens.sign(composing.OPEN, message.pk), "garbage"):
        response = client.get(f"/o/{token}.gif")
        assert response.status_code == 200
        assert response["Content-Type"] == "image/gif"
        assert response.content.startswith(b"GIF89a")
        assert "no-cache" in response["Cache-Control"]


def test_view_in_browser_renders_the_message_for_its_subscriber(message, client):
    response = client.get(path_of(composing.view_url(message.pk)))
    assert response.status_code == 200
    # the fan-out's INSERT … SELECT sets no row order, so name the message's own subscriber
    first_name = message.subscriber.name.split()[0]
    assert f"Hello {first_name}," in response.content.decode()
    assert "sandbox" in response["Content-Security-Policy"]


def test_view_in_browser_with_a_bad_token_is_404(message, client):
    assert client.get("/v/garbage").status_code == 404


def test_preferences_url_in_messages_is_the_lists_apps_own(message):
    from lists.tokens import preferences_url

    assert composing.preferences_url(message.subscriber) == preferences_url(message.subscriber)
