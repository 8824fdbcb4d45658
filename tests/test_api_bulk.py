"""The bulk upsert (POST /api/v1/subscribers/bulk/): typed attributes, per-item problems, both engines,
and its hook events written in the same transaction as its rows."""

import json

import pytest
from django.db import transaction

from campaigns import hooks
from campaigns.models import HookDelivery
from lists import bulk, events, importing
from lists.models import ImportJob, Subscriber, Subscription
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory
from tests.hook_receiver import receiver  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db

URL = "/api/v1/subscribers/bulk/"
TYPED = {
    "age": 41, "score": 9.5, "vip": True, "churned": False, "nickname": None, "empty": "",
    "address": {"city": "Berlin", "zip": "10115", "geo": {"lat": 52.52, "lng": 13.405}},
    "interests": ["cycling", 3, False, None, {"since": 2019}], "big": 12345678901234567890,
}


@pytest.fixture(params=["copy", "portable"])
def engine(request):
    return request.param


def upsert(mailing_list, items, engine, **options):
    return bulk.upsert_subscribers(mailing_list, items, portable=engine == "portable", **options)


def test_attributes_keep_their_json_types_through_the_api(editor_api):
    mailing_list = MailingListFactory()

    response = editor_api.post(URL, {"list": mailing_list.pk, "subscribers": [
        {"email": "ada@example.org", "name": "Ada", "attributes": TYPED}]}, format="json")

    assert response.status_code == 200, response.json()
    subscriber = Subscriber.objects.get(email="ada@example.org")
    assert subscriber.attributes == TYPED
    shown = editor_api.get(f"/api/v1/subscribers/{subscriber.pk}/").json()
    assert shown["attributes"] == TYPED


def test_attributes_keep_their_types_on_both_engines(engine):
    mailing_list = MailingListFactory()

    result = upsert(mailing_list, [{"email": "ada@example.org", "attributes": TYPED}], engine)

    assert (result.created, result.problems) == (1, [])
    assert Subscriber.objects.get().attributes == TYPED


def test_an_upsert_replaces_lists_and_objects_whole_and_keeps_other_attributes(engine):
    mailing_list = MailingListFactory()
    stored = {"interests": ["cycling", "chess"], "address": {"city": "Berlin", "zip": "10115"}, "vip": True}
    for email in ("ada@example.org", "bob@example.org"):
        SubscriptionFactory(mailing_list=mailing_list, subscriber__email=email, subscriber__attributes=stored)

    result = upsert(mailing_list, [
        {"email": "ada@example.org", "attributes": {"interests": ["cycling"], "address": {"city": "Paris"}}},
        # Contained in what is stored (jsonb @>), yet a change: the list shrinks, the object loses a key.
        {"email": "bob@example.org", "attributes": {"interests": ["chess"], "address": {"zip": "10115"}}},
    ], engine)

    assert (result.created, result.updated) == (0, 2)
    attributes = dict(Subscriber.objects.values_list("email", "attributes"))
    assert attributes == {
        "ada@example.org": {"interests": ["cycling"], "address": {"city": "Paris"}, "vip": True},
        "bob@example.org": {"interests": ["chess"], "address": {"zip": "10115"}, "vip": True},
    }


def test_an_upsert_that_changes_nothing_leaves_the_row_alone(engine):
    mailing_list = MailingListFactory()
    attributes = {"interests": ["cycling", "chess"], "address": {"city": "Berlin"}, "age": 41}
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="ada@example.org",
                        subscriber__attributes=attributes)
    before = Subscriber.objects.get().updated_at

    upsert(mailing_list, [{"email": "ada@example.org", "attributes": {"interests": ["cycling", "chess"]}}], engine)

    assert Subscriber.objects.get().updated_at == before


def test_each_bad_item_is_reported_with_its_index_and_reason_and_the_good_ones_go_in(editor_api):
    mailing_list = MailingListFactory()
    items = [
        {"email": "first@example.org", "attributes": {"plan": "pro"}},
        {"email": "a@example.org", "attributes": "pro"},
        {"email": "b@example.org", "attributes": {"bad key": 1}},
        {"email": "c@example.org", "attributes": {"note": "x" * 1001}},
        {"email": "d@example.org", "attributes": {"deep": [[[[[1]]]]]}},
        {"email": "e@example.org", "attributes": {"address": {"street": "Main\nStreet"}}},
        {"email": "f@example.org", "name": "x" * 201},
        {"email": "g@example.org", "time_zone": "Mars/Olympus"},
        {"email": "h@example.org", "name": "Ada\nBcc: x@example.org"},
        {"email": 5},
        {"email": "i@example.org", "name": "\ud800"},
        {"email": "j@example.org", "attributes": {"nested": {"k": "\ud800"}}},
        {"email": "FIRST@example.org"},
        {"email": "last@example.org", "attributes": {"deep": [[[[1]]]]}},
    ]
    # Raw JSON: a client may send a lone surrogate ("\ud800"), which the test client could not encode.
    body = json.dumps({"list": mailing_list.pk, "subscribers": items})

    response = editor_api.post(URL, body, content_type="application/json")

    assert response.status_code == 200, response.json()
    result = response.json()
    assert {k: result[k] for k in ("created", "updated", "skipped", "invalid")} == {
        "created": 2, "updated": 0, "skipped": 1, "invalid": 11}
    assert result["problems"] == [
        {"index": 1, "email": "a@example.org", "reason": "Attributes must be a set of names and values."},
        {"index": 2, "email": "b@example.org",
         "reason": "Name the attribute 'bad key' with letters, digits, _ . or - only."},
        {"index": 3, "email": "c@example.org",
         "reason": "The value of 'note' is too long (at most 1000 characters)."},
        {"index": 4, "email": "d@example.org",
         "reason": "The value of 'deep' nests lists and objects more than 4 levels deep."},
        {"index": 5, "email": "e@example.org",
         "reason": "The value of 'address' cannot contain line breaks or control characters."},
        {"index": 6, "email": "f@example.org", "reason": "name too long (more than 200 characters)"},
        {"index": 7, "email": "g@example.org", "reason": "unknown time zone “Mars/Olympus”"},
        {"index": 8, "email": "h@example.org", "reason": "line break inside a field"},
        {"index": 9, "email": "", "reason": "email, name and time_zone must be text."},
        {"index": 10, "email": "i@example.org", "reason": "bad encoding (text that is not valid Unicode)"},
        {"index": 11, "email": "j@example.org", "reason": "bad encoding (text that is not valid Unicode)"},
        {"index": 12, "email": "FIRST@example.org", "reason": "duplicate of item 0"},
    ]
    assert sorted(Subscriber.objects.values_list("email", flat=True)) == ["first@example.org", "last@example.org"]
    assert Subscriber.objects.get(email="last@example.org").attributes == {"deep": [[[[1]]]]}
    job = ImportJob.objects.get()
    assert (job.status, job.rows, job.created, job.skipped, job.invalid) == ("done", 14, 2, 1, 11)


def test_both_engines_give_the_same_results(engine):
    mailing_list = MailingListFactory()
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="known@example.org", status="unconfirmed")
    SubscriberFactory(email="blocked@example.org", status="blocklisted")

    result = upsert(mailing_list, [
        {"email": "new@example.org", "name": "New", "time_zone": "Europe/Berlin", "attributes": {"n": 1}},
        {"email": "known@example.org", "attributes": {"n": 2}},
        {"email": "blocked@example.org"},
        {"email": "New@Example.org"},
        {"email": "broken"},
    ], engine, tags=["shop"])

    assert (result.created, result.updated, result.skipped, result.invalid) == (1, 1, 2, 1)
    assert result.problems == [
        {"index": 2, "email": "blocked@example.org", "reason": "blocklisted"},
        {"index": 3, "email": "New@example.org", "reason": "duplicate of item 0"},
        {"index": 4, "email": "broken", "reason": "invalid email address"},
    ]
    new = Subscriber.objects.get(email="new@example.org")
    assert (new.name, new.time_zone, new.attributes) == ("New", "Europe/Berlin", {"n": 1})
    assert list(new.tags.values_list("name", flat=True)) == ["shop"]
    assert set(Subscription.objects.filter(mailing_list=mailing_list).values_list("status", flat=True)) == {
        "confirmed"}


def test_a_request_of_only_bad_items_writes_an_empty_job(engine):
    result = upsert(MailingListFactory(), [{"email": "broken"}], engine)

    assert (result.created, result.invalid) == (0, 1)
    assert not Subscriber.objects.exists()


# --- Hook events: in the same transaction as the rows ------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_bulk_upsert_delivers_its_events_once_per_created_subscriber_and_confirmed_subscription(
        editor_api, receiver, alice):
    for event in ("subscriber.created", "subscription.confirmed"):
        hooks.subscribe(event=event, target=receiver.url(f"/{event}"), owner=alice)
    mailing_list = MailingListFactory()
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="known@example.org")

    response = editor_api.post(URL, {"list": mailing_list.pk, "subscribers": [
        {"email": "known@example.org", "name": "Renamed"}, {"email": "ada@example.org", "attributes": {"n": 1}},
        {"email": "bob@example.org"}, {"email": "ADA@example.org"}]}, format="json")

    assert (response.json()["created"], response.json()["updated"]) == (2, 1)
    bodies = [json.loads(r.body) for r in receiver.requests]
    created = Subscriber.objects.filter(email__in=["ada@example.org", "bob@example.org"]).order_by("pk")
    assert [b["data"] for b in bodies if b["event"] == "subscriber.created"] == [
        events.created_payload(s) for s in created]
    confirmed = Subscription.objects.filter(subscriber__in=created).select_related(
        "subscriber", "mailing_list").order_by("pk")
    assert [b["data"] for b in bodies if b["event"] == "subscription.confirmed"] == [
        events.subscription_payload(s) for s in confirmed]
    assert len(bodies) == 4


@pytest.mark.django_db(transaction=True)
def test_a_bulk_upsert_that_fails_after_its_merge_leaves_no_rows_no_job_and_no_event(
        editor_api, receiver, alice, monkeypatch):
    hooks.subscribe(event="subscriber.created", target=receiver.url(), owner=alice)
    mailing_list = MailingListFactory()

    def crash(job):  # asked once the rows and events are written, before the commit
        assert HookDelivery.objects.count() == 2 and Subscriber.objects.count() == 2
        raise RuntimeError("the worker was killed")

    monkeypatch.setattr(importing, "needs_confirmations", crash)

    with pytest.raises(RuntimeError):
        editor_api.post(URL, {"list": mailing_list.pk, "subscribers": [
            {"email": "ada@example.org"}, {"email": "bob@example.org"}]}, format="json")

    assert not Subscriber.objects.exists()
    assert not ImportJob.objects.exists()
    assert not HookDelivery.objects.exists()
    assert receiver.requests == []


def test_a_bulk_upsert_inside_a_larger_transaction_rolls_back_with_it(alice):
    hooks.subscribe(event="subscriber.created", target="http://127.0.0.1:9/created", owner=alice)
    mailing_list = MailingListFactory()

    with pytest.raises(RuntimeError), transaction.atomic():
        bulk.upsert_subscribers(mailing_list, [{"email": "ada@example.org"}])
        assert HookDelivery.objects.count() == 1
        raise RuntimeError("the caller fails afterwards")

    assert not Subscriber.objects.exists()
    assert not HookDelivery.objects.exists()
