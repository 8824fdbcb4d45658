"""REST hooks for CSV imports: what an import creates, confirms or unsubscribes is announced once per
row, in the import's own transaction, and delivered to a real receiver on loopback."""

import json

import pytest
from django.db import connection

from campaigns import hooks
from campaigns.models import HookDelivery
from lists import events, importing, importing_orm, importing_pg
from lists.models import ImportJob, Subscriber, Subscription, Suppression
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory
from tests.hook_receiver import receiver  # noqa: F401 (a fixture)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(params=["copy", "portable"])
def engine(request):
    """The Postgres COPY path and the portable ORM path announce the same events."""
    return request.param


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter")


def listen(receiver, owner, *event_names):
    for event in event_names:
        hooks.subscribe(event=event, target=receiver.url(f"/{event}"), owner=owner)


def import_csv(tmp_path, text, mailing_list, engine, **fields):
    path = tmp_path / "people.csv"
    path.write_text(text, encoding="utf-8")
    job = ImportJob.objects.create(mailing_list=mailing_list, file=str(path), original_name=path.name, **fields)
    importing.run_import(job, portable=engine == "portable")
    job.refresh_from_db()
    return job


def received(receiver, event):
    """The data of each delivery of `event`, in the order they arrived."""
    bodies = [json.loads(r.body) for r in receiver.requests]
    return [body["data"] for body in bodies if body["event"] == event]


def counts(job):
    return {k: getattr(job, k) for k in ("status", "created", "updated", "skipped", "invalid")}


def test_an_import_delivers_subscriber_created_once_per_created_row_and_none_for_updated_rows(
        tmp_path, newsletter, engine, receiver, alice):
    listen(receiver, alice, "subscriber.created")
    SubscriptionFactory(mailing_list=newsletter, subscriber__email="known@example.org", subscriber__name="Old")
    Suppression.objects.create(email="gone@example.org", reason="hard_bounce")

    job = import_csv(tmp_path, "email,name,plan\nada@example.org,Ada,pro\nknown@example.org,Renamed,\n"
                               "ADA@example.org,Ada again,\ngone@example.org,,\nbob@example.org,Bob,team\n",
                     newsletter, engine, mode=ImportJob.UPSERT, confirmed=True)

    assert counts(job) == {"status": "done", "created": 2, "updated": 1, "skipped": 2, "invalid": 0}
    created = Subscriber.objects.filter(email__in=["ada@example.org", "bob@example.org"]).order_by("pk")
    assert received(receiver, "subscriber.created") == [events.created_payload(s) for s in created]
    assert len(receiver.requests) == 2
    assert list(HookDelivery.objects.values_list("status", flat=True)) == ["delivered", "delivered"]


def test_a_confirmed_import_delivers_subscription_confirmed_for_each_subscription_it_confirmed(
        tmp_path, newsletter, engine, receiver, alice):
    listen(receiver, alice, "subscription.confirmed")
    SubscriptionFactory(mailing_list=newsletter, subscriber__email="waiting@example.org", status="unconfirmed")
    SubscriptionFactory(mailing_list=newsletter, subscriber__email="member@example.org")
    SubscriptionFactory(subscriber__email="elsewhere@example.org")  # a subscriber, not on this list yet
    csv_text = "email\nnew@example.org\nwaiting@example.org\nmember@example.org\nelsewhere@example.org\n"

    job = import_csv(tmp_path, csv_text, newsletter, engine, mode=ImportJob.UPSERT, confirmed=True)
    again = import_csv(tmp_path, csv_text, newsletter, engine, mode=ImportJob.UPSERT, confirmed=True)

    assert (job.created, job.updated, again.created, again.updated) == (2, 2, 0, 4)
    confirmed = Subscription.objects.filter(
        mailing_list=newsletter, subscriber__email__in=["new@example.org", "waiting@example.org",
                                                        "elsewhere@example.org"],
    ).select_related("subscriber", "mailing_list").order_by("pk")
    assert [s.status for s in confirmed] == ["confirmed"] * 3
    assert received(receiver, "subscription.confirmed") == [events.subscription_payload(s) for s in confirmed]


def test_an_unconfirmed_import_confirms_nothing_and_announces_no_confirmation(
        tmp_path, newsletter, engine, receiver, alice):
    listen(receiver, alice, "subscription.confirmed")

    job = import_csv(tmp_path, "email\nnew@example.org\n", newsletter, engine, mode=ImportJob.ADD, confirmed=False)

    assert (job.created, Subscription.objects.get().status) == (1, "unconfirmed")
    assert receiver.requests == []
    assert not HookDelivery.objects.exists()


def test_an_unsubscribe_import_delivers_subscription_unsubscribed_once_per_unsubscribed_row(
        tmp_path, newsletter, engine, receiver, alice):
    listen(receiver, alice, "subscription.unsubscribed")
    leaving = SubscriptionFactory(mailing_list=newsletter, subscriber__email="leaving@example.org")
    SubscriptionFactory(mailing_list=newsletter, subscriber__email="gone@example.org", status="unsubscribed")
    staying = SubscriptionFactory(subscriber__email="staying@example.org")  # on another list only

    job = import_csv(tmp_path, "email\nleaving@example.org\ngone@example.org\nstaying@example.org\n",
                     newsletter, engine, mode=ImportJob.UNSUBSCRIBE)

    assert (job.updated, job.skipped) == (1, 2)
    leaving.refresh_from_db()
    assert leaving.status == "unsubscribed"
    assert received(receiver, "subscription.unsubscribed") == [events.subscription_payload(leaving)]
    staying.refresh_from_db()
    assert staying.status == "confirmed"


def _fail_after_the_merge(monkeypatch, engine):
    """Make the import fail once its rows and events are written, before its transaction commits."""

    def fail(*args, **kwargs):
        raise RuntimeError("the disk is full")

    if engine == "copy":
        monkeypatch.setattr(importing_pg, "_problems", fail)  # read after the merge's writes and events
    else:
        monkeypatch.setattr(importing_orm._Batcher, "_tag", fail)  # after the batch's rows and events


def test_an_import_that_fails_after_its_merge_leaves_no_rows_and_delivers_no_event(
        tmp_path, newsletter, engine, receiver, alice, monkeypatch):
    listen(receiver, alice, "subscriber.created", "subscription.confirmed")
    _fail_after_the_merge(monkeypatch, engine)

    with pytest.raises(RuntimeError):
        import_csv(tmp_path, "email\nada@example.org\nbob@example.org\n", newsletter, engine,
                   mode=ImportJob.ADD, confirmed=True)
    hooks.deliver_due()

    assert ImportJob.objects.get().status == "failed"
    assert not Subscriber.objects.exists()
    assert not HookDelivery.objects.exists()
    assert receiver.requests == []


def test_an_import_nobody_listens_to_builds_no_payload(tmp_path, newsletter, engine, receiver, alice, monkeypatch):
    listen(receiver, alice, "message.sent")  # a hook, but not on the audience's events

    def refuse(*args, **kwargs):
        raise AssertionError("a payload was built for an event nobody listens to")

    monkeypatch.setattr(events, "publish", refuse)
    monkeypatch.setattr(events, "publish_rows", refuse)
    waiting = SubscriptionFactory(mailing_list=newsletter, subscriber__email="waiting@example.org",
                                  status="unconfirmed")

    job = import_csv(tmp_path, "email\nnew@example.org\nwaiting@example.org\n", newsletter, engine,
                     mode=ImportJob.UPSERT, confirmed=True)

    assert (job.status, job.created, job.updated) == ("done", 1, 1)
    waiting.refresh_from_db()
    assert waiting.status == "confirmed"
    assert not HookDelivery.objects.exists()


def test_payloads_built_by_postgres_equal_those_built_in_python(newsletter):
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada", time_zone="Europe/Berlin",
                                   attributes={"plan": "pro", "seats": 3, "address": {"city": "Berlin"}})
    subscription = SubscriptionFactory(subscriber=subscriber, mailing_list=newsletter)
    # isoformat() leaves out microseconds that are zero; the SQL must too.
    Subscriber.objects.filter(pk=subscriber.pk).update(created_at="2030-05-01T09:00:00Z")
    Subscription.objects.filter(pk=subscription.pk).update(confirmed_at="2030-05-01T09:00:00.000250Z")
    subscriber.refresh_from_db()
    subscription.refresh_from_db()

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {events.created_payload_sql('s')}::text,"
                       f" {events.subscription_payload_sql('m', 'l', 's')}::text"
                       " FROM lists_subscription m JOIN lists_subscriber s ON s.id = m.subscriber_id"
                       " JOIN lists_mailinglist l ON l.id = m.mailing_list_id WHERE m.id = %s", [subscription.pk])
        created, subscribed = map(json.loads, cursor.fetchone())

    assert created == events.created_payload(subscriber)
    assert created["subscriber"]["created_at"] == "2030-05-01T09:00:00+00:00"
    assert subscribed == events.subscription_payload(subscription)
    assert subscribed["subscription"]["confirmed_at"] == "2030-05-01T09:00:00.000250+00:00"


def test_a_listener_without_a_set_based_receiver_gets_the_payloads_as_dicts(tmp_path, newsletter):
    got = []
    listener = events.register(wants=lambda event: event == events.SUBSCRIBER_CREATED,
                               receive=lambda event, payloads: got.append((event, payloads)))
    try:
        import_csv(tmp_path, "email,name\nada@example.org,Ada\n", newsletter, "copy", mode=ImportJob.ADD)
    finally:
        events.unregister(listener)

    assert got == [("subscriber.created", [events.created_payload(Subscriber.objects.get())])]
