"""Bulk actions on the subscriber index: a selection or a whole filter; tag, untag, unsubscribe, delete; confirm first."""

import pytest

from lists import bulk_actions, events
from lists.models import Subscriber, Subscription, Tag
from tests.factories import MailingListFactory
from tests.sending_factories import audience

pytestmark = pytest.mark.django_db
BULK = "/subscribers/bulk/"


@pytest.fixture
def news():
    return MailingListFactory(name="News")


@pytest.fixture
def readers(news):
    return audience(news, 6)


def _ids(subscribers):
    return [s.pk for s in subscribers]


def _tags_of(email):
    return sorted(Subscriber.objects.get(email=email).tags.values_list("name", flat=True))


def test_the_first_post_only_shows_the_count_and_changes_nothing(bob_client, readers):
    response = bob_client.post(BULK, {"action": "tag", "scope": "selected", "tag_name": "vip",
                                      "ids": _ids(readers[:2])})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Add the tag “vip” to 2 subscribers?" in html and "<strong>2</strong> subscribers are affected" in html
    assert not Tag.objects.filter(name="vip").exists()


def test_tagging_the_ticked_subscribers(bob_client, readers):
    response = bob_client.post(BULK, {"action": "tag", "scope": "selected", "tag_name": "vip",
                                      "ids": _ids(readers[:2]), "confirmed": "1"}, follow=True)

    assert "Tagged 2 subscriber(s) with “vip”." in response.content.decode()
    assert _tags_of("reader0@example.org") == ["vip"] and _tags_of("reader2@example.org") == []


def test_tagging_a_whole_filter_including_rows_not_on_the_page(bob_client, readers, news):
    other = MailingListFactory(name="Other")
    audience(other, 2, prefix="outsider")

    bob_client.post(BULK, {"action": "tag", "scope": "filter", "list": str(news.pk), "tag_name": "spring",
                           "confirmed": "1"})

    assert Tag.objects.get(name="spring").subscribers.count() == 6
    assert _tags_of("outsider0@example.org") == []


def test_tagging_twice_changes_nothing_the_second_time(readers):
    everyone = Subscriber.objects.all()
    assert bulk_actions.tag_all(everyone, "vip") == 6
    assert bulk_actions.tag_all(everyone, "vip") == 0


def test_untagging_a_search(bob_client, readers):
    bulk_actions.tag_all(Subscriber.objects.all(), "vip")

    response = bob_client.post(BULK, {"action": "untag", "scope": "filter", "q": "reader1", "tag_name": "vip",
                                      "confirmed": "1"}, follow=True)

    assert "Removed “vip” from 1 subscriber(s)." in response.content.decode()
    assert _tags_of("reader1@example.org") == [] and _tags_of("reader0@example.org") == ["vip"]


def test_unsubscribing_from_one_list_leaves_the_others(bob_client, readers, news):
    other = MailingListFactory(name="Other")
    Subscription.objects.create(subscriber=readers[0], mailing_list=other, status=Subscription.CONFIRMED)

    bob_client.post(BULK, {"action": "unsubscribe", "scope": "selected", "ids": _ids(readers[:1]),
                           "from_list": str(news.pk), "confirmed": "1"})

    statuses = dict(Subscription.objects.filter(subscriber=readers[0]).values_list("mailing_list__name", "status"))
    assert statuses == {"News": "unsubscribed", "Other": "confirmed"}
    row = Subscription.objects.get(subscriber=readers[0], mailing_list=news)
    assert row.unsubscribed_at is not None and row.unsubscribe_reason == "By bob in the dashboard (bulk)"


def test_unsubscribing_announces_each_changed_subscription_once(readers):
    received = []
    listener = events.register(wants=lambda e: e == events.SUBSCRIPTION_UNSUBSCRIBED,
                               receive=lambda e, payloads: received.extend(payloads))
    try:
        assert bulk_actions.unsubscribe_all(Subscriber.objects.filter(pk__in=_ids(readers[:3]))) == 3
        assert bulk_actions.unsubscribe_all(Subscriber.objects.filter(pk__in=_ids(readers[:3]))) == 0
    finally:
        events.unregister(listener)
    assert sorted(p["subscriber"]["email"] for p in received) == [f"reader{i}@example.org" for i in range(3)]


def test_deleting_the_ticked_subscribers(bob_client, readers):
    response = bob_client.post(BULK, {"action": "delete", "scope": "selected", "ids": _ids(readers[:2]),
                                      "confirmed": "1"}, follow=True)

    assert "Deleted 2 subscriber(s)." in response.content.decode()
    assert Subscriber.objects.count() == 4
    assert not Subscription.objects.filter(subscriber_id__in=_ids(readers[:2])).exists()


def test_deleting_a_whole_filter_asks_for_the_count_to_be_typed(bob_client, readers, news):
    fields = {"action": "delete", "scope": "filter", "list": str(news.pk), "confirmed": "1"}

    wrong = bob_client.post(BULK, {**fields, "typed_count": "5"})
    assert wrong.status_code == 200 and "That is not the number of subscribers affected. Type 6." in wrong.content.decode()
    assert Subscriber.objects.count() == 6

    bob_client.post(BULK, {**fields, "typed_count": "6"})
    assert Subscriber.objects.count() == 0


def test_deleting_in_chunks_gets_everyone(readers, monkeypatch):
    monkeypatch.setattr(bulk_actions, "DELETE_CHUNK", 4)
    assert bulk_actions.delete_all(Subscriber.objects.all()) == 6
    assert Subscriber.objects.count() == 0


def test_nothing_ticked_is_an_error_not_a_whole_list_action(bob_client, readers):
    response = bob_client.post(BULK, {"action": "delete", "scope": "selected", "confirmed": "1"}, follow=True)

    assert "Tick at least one subscriber" in response.content.decode()
    assert Subscriber.objects.count() == 6


def test_a_tag_action_needs_a_tag(bob_client, readers):
    response = bob_client.post(BULK, {"action": "tag", "scope": "selected", "ids": _ids(readers[:1]),
                                      "confirmed": "1"}, follow=True)
    assert "Type the tag to add or remove." in response.content.decode() and not Tag.objects.exists()


def test_a_filter_naming_a_missing_tag_matches_nobody(bob_client, readers):
    response = bob_client.post(BULK, {"action": "delete", "scope": "filter", "tag": "no-such-tag",
                                      "confirmed": "1", "typed_count": "0"}, follow=True)

    assert "No subscriber matches, so nothing was changed." in response.content.decode()
    assert Subscriber.objects.count() == 6


def test_the_back_link_keeps_the_filter(bob_client, readers, news):
    response = bob_client.post(BULK, {"action": "tag", "scope": "filter", "list": str(news.pk), "q": "reader",
                                      "tag_name": "x", "confirmed": "1"})
    assert response["Location"] == f"/subscribers/?q=reader&list={news.pk}"


def test_a_viewer_cannot_act_in_bulk(victor_client, readers):
    response = victor_client.post(BULK, {"action": "delete", "scope": "selected", "ids": _ids(readers),
                                         "confirmed": "1"})
    assert response.status_code == 403 and Subscriber.objects.count() == 6


def test_the_index_offers_bulk_actions_to_editors_only(bob_client, victor_client, readers):
    assert 'id="bulk-form"' in bob_client.get("/subscribers/").content.decode()
    page = victor_client.get("/subscribers/").content.decode()
    assert 'id="bulk-form"' not in page and 'name="ids"' not in page


def test_deleting_a_list_a_sequence_sends_to_is_refused_with_a_reason(bob_client, news, readers):
    from campaigns.models import Sequence
    from tests.sending_factories import SenderFactory

    Sequence.objects.create(name="Welcome", mailing_list=news, sender=SenderFactory())

    response = bob_client.post(f"/lists/{news.pk}/delete/", follow=True)

    assert "“News” is still used by sequence “Welcome”." in response.content.decode()
    assert Subscription.objects.filter(mailing_list=news).count() == 6


# --- Large sets: in the background, with a progress page (lists.bulk_jobs) -------------------------


def test_a_large_set_runs_in_the_background_with_a_progress_page(bob_client, readers, news, monkeypatch,
                                                                    django_capture_on_commit_callbacks):
    from lists import bulk_jobs

    monkeypatch.setattr(bulk_jobs, "INLINE_MAX", 3)
    monkeypatch.setattr(bulk_actions, "CHUNK", 4)
    fields = {"action": "tag", "scope": "filter", "list": str(news.pk), "tag_name": "spring"}

    confirm = bob_client.post(BULK, fields)
    assert "That many run in the background" in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = bob_client.post(BULK, {**fields, "confirmed": "1"})

    assert response.status_code == 302 and response["Location"].startswith("/subscribers/bulk/")
    page = bob_client.get(response["Location"]).content.decode()
    assert "Add the tag “spring” to 6 subscribers" in page
    assert '<span class="percent">100%</span> · 6 subscribers done' in page
    assert "Tagged 6 subscriber(s) with “spring”." in page
    assert Tag.objects.get(name="spring").subscribers.count() == 6


def test_a_job_reports_its_progress_chunk_by_chunk(readers, monkeypatch):
    monkeypatch.setattr(bulk_actions, "CHUNK", 4)
    seen = []

    changed = bulk_actions.apply_in_chunks("tag", Subscriber.objects.all(), tag_name="vip",
                                           on_chunk=lambda done, n: seen.append((done, n)))

    assert changed == 6 and seen == [(4, 4), (6, 6)]


def test_a_job_delivered_twice_runs_once(bob, readers, django_capture_on_commit_callbacks):
    from lists import bulk_jobs

    with django_capture_on_commit_callbacks(execute=False):
        job_id = bulk_jobs.start({"action": "delete", "ids": [s.pk for s in readers[:2]]}, total=2, user=bob)
    bulk_jobs.run(job_id)
    newcomer = Subscriber.objects.create(email="reader0@example.org")  # a new row that happens to get…
    Subscriber.objects.filter(pk=newcomer.pk).update(id=readers[0].pk)  # …the deleted id back
    bulk_jobs.run(job_id)  # the job is done: a second delivery changes nothing

    assert bulk_jobs.get(job_id)["status"] == "done" and bulk_jobs.get(job_id)["changed"] == 2
    assert Subscriber.objects.filter(email="reader0@example.org").exists()


def test_a_failed_job_says_how_far_it_got_and_what_to_do(bob_client, bob, readers, django_capture_on_commit_callbacks):
    from lists import bulk_jobs

    with django_capture_on_commit_callbacks(execute=False):
        job_id = bulk_jobs.start({"action": "explode", "ids": [readers[0].pk], "summary": "Explode",
                                  "back": "/subscribers/"}, total=1, user=bob)
    with pytest.raises(ValueError, match="Unknown bulk action"):
        bulk_jobs.run(job_id)

    page = bob_client.get(f"/subscribers/bulk/{job_id}/").content.decode()
    assert "The action stopped after 0 of 1 subscribers." in page and "start the same action again" in page


def test_an_unknown_job_is_not_found(bob_client):
    assert bob_client.get("/subscribers/bulk/no-such-job/").status_code == 404
