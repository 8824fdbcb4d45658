"""
REST hooks end to end against a real HTTP receiver on loopback: emitted after
commit only, signed, retried with back-off, 410 removes, failing hooks are
disabled and their owner told; the API and the dashboard pages.
"""

import hashlib
import hmac
import json
import time
from datetime import datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from campaigns import hooks, ledger, sending
from campaigns.models import Broadcast, Hook, HookDelivery
from lists import services
from lists.models import Subscription
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory
from tests.hook_receiver import receiver  # noqa: F401 (a fixture)
from tests.sending_factories import BroadcastFactory, audience, backend_for


def _hook(receiver, event, owner, path="/hook"):
    return hooks.subscribe(event=event, target=receiver.url(path), owner=owner)


def verify_signature(secret, body, header, tolerance=300):
    """The receiver's check, as documented in README.md (REST hooks): written without our code."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    timestamp = int(fields["t"])
    if abs(time.time() - timestamp) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


# --- Emitting after commit -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_an_event_is_delivered_only_after_its_transaction_commits(receiver, alice):
    hook = _hook(receiver, "subscriber.created", alice)
    mailing_list = MailingListFactory(opt_in="single")

    with transaction.atomic():
        services.subscribe(mailing_list, "ada@example.org", name="Ada", source=Subscription.API)
        assert receiver.requests == []  # not before the commit
        assert HookDelivery.objects.count() == 1  # but already in the outbox, in the same transaction

    [request] = receiver.requests
    body = json.loads(request.body)
    assert body["event"] == "subscriber.created"
    assert body["data"]["subscriber"]["email"] == "ada@example.org"
    assert body["data"]["subscriber"]["name"] == "Ada"
    assert request.headers["X-Autoresponder-Event"] == "subscriber.created"
    assert request.headers["X-Autoresponder-Delivery"] == body["id"]
    assert verify_signature(hook.secret, request.body, request.headers["X-Autoresponder-Signature"])
    assert HookDelivery.objects.get().status == "delivered"


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_event_is_never_delivered(receiver, alice):
    _hook(receiver, "subscriber.created", alice)
    mailing_list = MailingListFactory(opt_in="single")

    with pytest.raises(RuntimeError), transaction.atomic():
        services.subscribe(mailing_list, "ada@example.org", source=Subscription.API)
        raise RuntimeError("the caller fails after the subscribe")

    hooks.deliver_due()
    assert receiver.requests == []
    assert not HookDelivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_events_of_one_commit_arrive_in_order(receiver, alice):
    _hook(receiver, "subscription.unsubscribed", alice)
    subscriber = SubscriberFactory(email="ada@example.org")
    first, second = MailingListFactory(name="First"), MailingListFactory(name="Second")
    SubscriptionFactory(subscriber=subscriber, mailing_list=first)
    SubscriptionFactory(subscriber=subscriber, mailing_list=second)

    with transaction.atomic():
        services.unsubscribe(subscriber, first)
        services.unsubscribe(subscriber, second)

    assert [json.loads(r.body)["data"]["list"]["name"] for r in receiver.requests] == ["First", "Second"]


# --- The audience's events through lists.events ----------------------------------------------------


@pytest.mark.django_db
def test_lists_services_announce_their_events(alice, django_capture_on_commit_callbacks):
    for event in ("subscriber.created", "subscription.confirmed", "subscription.unsubscribed",
                  "subscriber.deleted"):
        hooks.subscribe(event=event, target=f"http://127.0.0.1:9/{event}", owner=alice)
    double = MailingListFactory(opt_in="double")

    subscription = services.subscribe(double, "ada@example.org", source=Subscription.API)
    services.confirm(subscription)
    services.confirm(subscription)  # idempotent: no second event
    services.unsubscribe(subscription.subscriber)
    services.wipe_subscriber(subscription.subscriber)
    other = services.subscribe(double, "bob@example.org", source=Subscription.API).subscriber
    services.delete_subscriber(other)

    events = list(HookDelivery.objects.order_by("pk").values_list("event", flat=True))
    assert events == ["subscriber.created", "subscription.confirmed", "subscription.unsubscribed",
                      "subscriber.deleted", "subscriber.created", "subscriber.deleted"]
    erased = HookDelivery.objects.filter(event="subscriber.deleted").order_by("pk").first().body["data"]
    assert erased == {"subscriber": {"id": subscription.subscriber_id, "email": "ada@example.org"}, "erased": True}
    confirmed = HookDelivery.objects.get(event="subscription.confirmed").body["data"]
    assert (confirmed["subscription"]["status"], confirmed["list"]["id"]) == ("confirmed", double.pk)


@pytest.mark.django_db
def test_bulk_upsert_announces_only_the_subscribers_it_created(alice, editor_api):
    hooks.subscribe(event="subscriber.created", target="http://127.0.0.1:9/created", owner=alice)
    mailing_list = MailingListFactory()
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="known@example.org")

    editor_api.post("/api/v1/subscribers/bulk/", {"list": mailing_list.pk, "subscribers": [
        {"email": "known@example.org"}, {"email": "new1@example.org"}, {"email": "new2@example.org"}]},
        format="json")

    emails = sorted(d.body["data"]["subscriber"]["email"] for d in HookDelivery.objects.all())
    assert emails == ["new1@example.org", "new2@example.org"]


@pytest.mark.django_db
def test_no_hook_no_delivery_rows(alice):
    services.subscribe(MailingListFactory(), "ada@example.org", source=Subscription.API)

    assert not HookDelivery.objects.exists()


# --- Retries, back-off, 410, disabling ---------------------------------------------------------------


def _delivery(receiver, owner, event="message.sent"):
    hook = _hook(receiver, event, owner)
    hooks.emit(event, {"message": {"id": 1}})
    return hook, HookDelivery.objects.get(hook=hook)


@pytest.mark.django_db
def test_a_5xx_is_retried_with_exponential_back_off_until_it_succeeds(receiver, alice):
    receiver.statuses = [500, 503, 200]
    hook, delivery = _delivery(receiver, alice)
    start = delivery.next_attempt_at

    assert hooks.deliver_due(now=start) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("pending", 1, start + timedelta(minutes=1))
    assert hooks.deliver_due(now=start + timedelta(seconds=59)) == 0  # not due yet

    hooks.deliver_due(now=start + timedelta(minutes=1))
    delivery.refresh_from_db()
    assert delivery.next_attempt_at == start + timedelta(minutes=3)  # then 2 minutes

    hooks.deliver_due(now=start + timedelta(minutes=3))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert [a["status"] for a in delivery.attempt_log] == [500, 503, 200]
    assert len(receiver.requests) == 3
    assert len({r.headers["X-Autoresponder-Delivery"] for r in receiver.requests}) == 1  # one id: receivers dedupe
    hook.refresh_from_db()
    assert hook.consecutive_failures == 0 and hook.last_success_at is not None


@pytest.mark.django_db
def test_a_network_error_is_retried(receiver, alice):
    hook, delivery = _delivery(receiver, alice)
    receiver.stop()

    hooks.deliver_due(now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("pending", 1, None)
    assert "ConnectionRefusedError" in delivery.last_error


@pytest.mark.django_db
def test_after_a_day_of_failures_the_delivery_fails_and_the_hook_is_disabled_for_its_owner(receiver, alice,
                                                                                         alice_client):
    receiver.statuses = [502]
    hook, delivery = _delivery(receiver, alice)
    now = delivery.next_attempt_at

    while delivery.status == "pending":
        hooks.deliver_due(now=now)
        delivery.refresh_from_db()
        now = delivery.next_attempt_at

    times = [datetime.fromisoformat(attempt["at"]) for attempt in delivery.attempt_log]
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    assert delivery.status == "failed"
    assert gaps == [timedelta(minutes=m) for m in (1, 2, 4, 8, 16, 32, 64, 128, 256)] + 2 * [timedelta(hours=6)]
    assert times[-1] - times[0] < timedelta(days=1)
    hook.refresh_from_db()
    assert not hook.is_active
    assert "kept failing for a day" in hook.disabled_reason
    overview = alice_client.get("/").content.decode()
    assert "Your REST hooks need attention" in overview and hook.target in overview


@pytest.mark.django_db
def test_a_410_gone_removes_the_hook(receiver, alice):
    receiver.statuses = [410]
    hook, delivery = _delivery(receiver, alice)

    hooks.deliver_due(now=delivery.next_attempt_at)

    assert not Hook.objects.filter(pk=hook.pk).exists()
    assert not HookDelivery.objects.exists()


@pytest.mark.django_db
def test_a_4xx_fails_at_once_and_twenty_in_a_row_disable_the_hook(receiver, alice, settings):
    receiver.statuses = [400]
    hook = _hook(receiver, "message.sent", alice)
    for n in range(20):
        hooks.emit("message.sent", {"n": n})

    hooks.deliver_due(limit=50)

    assert set(HookDelivery.objects.values_list("status", "attempts")) == {("failed", 1)}
    hook.refresh_from_db()
    assert (hook.is_active, hook.consecutive_failures) == (False, 20)
    assert "The last 20 deliveries were refused (last: HTTP 400)" in hook.disabled_reason


@pytest.mark.django_db
def test_a_redirect_is_not_followed_and_fails(receiver, alice):
    receiver.statuses = [301]
    receiver.headers = {"Location": "http://169.254.169.254/latest/meta-data/"}
    hook, delivery = _delivery(receiver, alice)

    hooks.deliver_due(now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status) == ("failed", 301)
    assert len(receiver.requests) == 1


@pytest.mark.django_db
def test_enabling_a_disabled_hook_sends_its_waiting_deliveries(receiver, alice):
    hook, delivery = _delivery(receiver, alice)
    hooks.disable(hook, "test")
    assert hooks.deliver_due(now=delivery.next_attempt_at) == 0

    hooks.enable(hook)
    hooks.deliver_due()

    delivery.refresh_from_db()
    assert delivery.status == "delivered"


@pytest.mark.django_db
def test_a_target_that_became_private_is_refused_at_delivery(receiver, alice, settings):
    hook, delivery = _delivery(receiver, alice)
    settings.HOOKS_ALLOW_LOOPBACK = False

    hooks.deliver_due(now=delivery.next_attempt_at)

    delivery.refresh_from_db()
    assert delivery.last_error.startswith("Refused target: 127.0.0.1 resolves to 127.0.0.1")
    assert receiver.requests == []


# --- API --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_api_subscribe_returns_the_secret_once_and_delete_unsubscribes(owner_api, receiver):
    created = owner_api.post("/api/v1/hooks/", {"event": "subscriber.created", "target": receiver.url()},
                             format="json")
    hook_id = created.json()["id"]
    listed = owner_api.get("/api/v1/hooks/").json()["results"]
    deleted = owner_api.delete(f"/api/v1/hooks/{hook_id}/")

    assert created.status_code == 201, created.json()
    assert created.json()["secret"].startswith("whsec_")
    assert [h["id"] for h in listed] == [hook_id] and "secret" not in listed[0]
    assert deleted.status_code == 204 and not Hook.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/", "http://2130706433/",
    "http://0x7f000001/", "http://10.0.0.5/", "ftp://example.org/",
])
def test_api_refuses_unsafe_targets(owner_api, settings, target):
    settings.HOOKS_ALLOW_LOOPBACK = False

    response = owner_api.post("/api/v1/hooks/", {"event": "subscriber.created", "target": target}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["target"]
    assert not Hook.objects.exists()


@pytest.mark.django_db
def test_api_refuses_unknown_events_and_duplicates(owner_api, receiver):
    unknown = owner_api.post("/api/v1/hooks/", {"event": "moon.landed", "target": receiver.url()}, format="json")
    owner_api.post("/api/v1/hooks/", {"event": "message.sent", "target": receiver.url()}, format="json")
    again = owner_api.post("/api/v1/hooks/", {"event": "message.sent", "target": receiver.url()}, format="json")

    assert unknown.status_code == 400 and list(unknown.json()) == ["event"]
    assert again.json() == {"target": ["This target is already subscribed to this event."]}
    assert Hook.objects.count() == 1


@pytest.mark.django_db
def test_api_hooks_need_the_admin_role(editor_api, viewer_api, receiver):
    assert editor_api.get("/api/v1/hooks/").status_code == 403
    assert editor_api.post("/api/v1/hooks/", {"event": "message.sent", "target": receiver.url()},
                           format="json").status_code == 403
    assert viewer_api.get("/api/v1/hooks/").status_code == 403
    assert not Hook.objects.exists()


@pytest.mark.django_db
def test_api_deliveries_and_disable(owner_api, receiver, alice):
    hook, delivery = _delivery(receiver, alice)
    hooks.deliver_due(now=delivery.next_attempt_at)

    deliveries = owner_api.get(f"/api/v1/hooks/{hook.pk}/deliveries/").json()["results"]
    disabled = owner_api.patch(f"/api/v1/hooks/{hook.pk}/", {"is_active": False}, format="json")

    assert [(d["status"], d["attempts"], d["last_status"]) for d in deliveries] == [("delivered", 1, 200)]
    assert disabled.json()["is_active"] is False


# --- Dashboard ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_dashboard_add_a_hook_shows_its_secret_once(alice_client, receiver):
    response = alice_client.post("/hooks/", {"event": "message.opened", "target": receiver.url()})

    hook = Hook.objects.get()
    assert response.status_code == 200
    assert hook.secret in response.content.decode()
    assert hook.secret not in alice_client.get("/hooks/").content.decode()
    assert hook.secret not in alice_client.get(f"/hooks/{hook.pk}/").content.decode()


@pytest.mark.django_db
def test_dashboard_refuses_an_unsafe_target_with_the_reason(alice_client, settings):
    settings.HOOKS_ALLOW_LOOPBACK = False

    response = alice_client.post("/hooks/", {"event": "message.opened", "target": "http://localhost/x"})

    assert response.status_code == 400
    assert "it is a loopback address (this machine)" in response.content.decode()
    assert not Hook.objects.exists()


@pytest.mark.django_db
def test_dashboard_detail_shows_deliveries_with_their_attempts_and_retries_a_failed_one(
        alice_client, alice, receiver, django_capture_on_commit_callbacks):
    receiver.statuses = [404, 200]
    hook, delivery = _delivery(receiver, alice)
    hooks.deliver_due(now=delivery.next_attempt_at)

    page = alice_client.get(f"/hooks/{hook.pk}/").content.decode()
    with django_capture_on_commit_callbacks(execute=True):  # the retry rings the delivery task on commit
        retried = alice_client.post(f"/hooks/deliveries/{delivery.pk}/retry/")

    assert "HTTP 404" in page and "Failed" in page
    assert retried.status_code == 302
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)


@pytest.mark.django_db
def test_dashboard_toggle_rotate_and_delete(alice_client, alice, receiver):
    hook = _hook(receiver, "message.sent", alice)
    old_secret = hook.secret

    alice_client.post(f"/hooks/{hook.pk}/toggle/")
    hook.refresh_from_db()
    assert not hook.is_active
    rotated = alice_client.post(f"/hooks/{hook.pk}/secret/")
    hook.refresh_from_db()
    assert hook.secret != old_secret and hook.secret in rotated.content.decode()
    alice_client.post(f"/hooks/{hook.pk}/delete/")
    assert not Hook.objects.exists()


@pytest.mark.django_db
def test_dashboard_hooks_are_for_admins(bob_client, mallory_client, alice, receiver):
    hook = _hook(receiver, "message.sent", alice)

    assert bob_client.get("/hooks/").status_code == 403
    assert bob_client.post(f"/hooks/{hook.pk}/delete/").status_code == 403
    assert mallory_client.get(f"/hooks/{hook.pk}/").status_code == 403
    assert Hook.objects.filter(pk=hook.pk).exists()


# --- The sending engine's events ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_broadcast_sent_through_smtp_announces_each_message_and_its_end(alice, smtp_server, receiver):
    _hook(receiver, "message.sent", alice, "/sent")
    _hook(receiver, "broadcast.finished", alice, "/finished")
    backend_for(smtp_server)
    newsletter = MailingListFactory()
    audience(newsletter, 2)
    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.SENDING, started_at=timezone.now())
    ledger.fan_out(broadcast, send_at=timezone.now())

    sending.send_batch(broadcast.pk)
    ledger.finish_if_done(broadcast.pk)
    hooks.deliver_due()

    by_path = {}
    for request in receiver.requests:
        by_path.setdefault(request.path, []).append(json.loads(request.body)["data"])
    assert sorted(d["message"]["email"] for d in by_path["/sent"]) == ["reader0@example.org", "reader1@example.org"]
    assert all(d["message"]["broadcast_id"] == broadcast.pk for d in by_path["/sent"])
    [finished] = by_path["/finished"]
    assert (finished["broadcast"]["id"], finished["broadcast"]["status"], finished["broadcast"]["sent_count"]) == (
        broadcast.pk, "sent", 2)
