"""The lists API: lists, subscribers, subscriptions, tags, segments, suppressions, unsubscribe."""

import pytest
from django.core import mail

from lists.models import ErasedAddress, MailingList, Segment, Subscriber, Subscription, Suppression, Tag
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


# --- Lists -----------------------------------------------------------------------------------


def test_list_create_uses_the_dashboard_rules_and_answers_with_the_list(editor_api):
    # when
    response = editor_api.post("/api/v1/lists/", {
        "name": "Weekly", "opt_in": "single", "form_fields": [{"name": "company", "label": "Company"}],
    }, format="json")
    # then
    assert response.status_code == 201, response.json()
    body = response.json()
    mailing_list = MailingList.objects.get(pk=body["id"])
    assert (mailing_list.name, mailing_list.opt_in) == ("Weekly", "single")
    assert mailing_list.form_fields == [{"name": "company", "label": "Company", "required": False}]
    assert body["public_id"] == str(mailing_list.public_id)
    assert body["form_fields"] == [{"name": "company", "label": "Company", "required": False}]


def test_list_create_refuses_a_confirmation_body_without_the_confirm_link(editor_api):
    response = editor_api.post("/api/v1/lists/", {"name": "X", "confirmation_body": "Hello"}, format="json")

    assert response.status_code == 400
    assert response.json() == {
        "confirmation_body": ["Put {{ confirm_url }} in the text: it is the link that confirms the signup."]
    }
    assert not MailingList.objects.exists()


def test_list_patch_changes_only_the_given_fields(editor_api):
    mailing_list = MailingListFactory(name="Old", description="Kept")

    response = editor_api.patch(f"/api/v1/lists/{mailing_list.pk}/", {"name": "New"}, format="json")

    assert response.status_code == 200, response.json()
    mailing_list.refresh_from_db()
    assert (mailing_list.name, mailing_list.description, mailing_list.from_email) == (
        "New", "Kept", "news@alice.example")


def test_list_unknown_fields_are_refused(editor_api):
    response = editor_api.post("/api/v1/lists/", {"name": "X", "colour": "red"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"colour": ["Unknown field."]}


def test_unknown_ids_are_404_not_500(editor_api):
    for path in ("/api/v1/lists/999999/", "/api/v1/subscribers/999999/", "/api/v1/subscriptions/999999/",
                 "/api/v1/tags/999999/", "/api/v1/segments/999999/", "/api/v1/suppressions/999999/",
                 "/api/v1/subscribers/999999/export/", "/api/v1/lists/abc/", "/api/v1/segments/999999/count/"):
        assert editor_api.get(path).status_code == 404, path
    for path in ("/api/v1/subscribers/999999/wipe/", "/api/v1/subscriptions/999999/confirm/",
                 "/api/v1/subscribers/999999/tag/"):
        assert editor_api.post(path, {"tags": ["x"]}, format="json").status_code == 404, path
    assert editor_api.delete("/api/v1/subscribers/999999/").status_code == 404


# --- Subscribers ----------------------------------------------------------------------------------


def test_subscriber_create_subscribes_to_each_list_with_the_api_as_source(editor_api):
    single, double = MailingListFactory(opt_in="single"), MailingListFactory(opt_in="double")

    response = editor_api.post("/api/v1/subscribers/", {
        "email": "Ada@Example.ORG", "name": "Ada", "attributes": {"plan": "pro"}, "lists": [single.pk, double.pk],
        "tags": ["vip"], "consent_ip": "203.0.113.5",
    }, format="json")

    assert response.status_code == 201, response.json()
    subscriber = Subscriber.objects.get()
    assert (subscriber.email, subscriber.name, subscriber.attributes) == ("Ada@example.org", "Ada", {"plan": "pro"})
    statuses = dict(subscriber.subscriptions.values_list("mailing_list_id", "status"))
    assert statuses == {single.pk: "confirmed", double.pk: "unconfirmed"}
    assert set(subscriber.subscriptions.values_list("source", flat=True)) == {"api"}
    assert subscriber.subscriptions.get(mailing_list=double).consent_ip == "203.0.113.5"
    assert response.json()["tags"] == ["vip"]


def test_subscriber_create_with_a_bad_address_is_400_on_email_and_saves_nothing(editor_api):
    mailing_list = MailingListFactory()

    response = editor_api.post("/api/v1/subscribers/", {"email": "not an address", "lists": [mailing_list.pk]},
                               format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["Enter a valid email address, such as name@example.com."]}
    assert not Subscriber.objects.exists()


def test_subscriber_create_with_a_line_break_in_the_name_is_refused(editor_api):
    mailing_list = MailingListFactory()

    response = editor_api.post("/api/v1/subscribers/", {
        "email": "a@example.org", "name": "Ada\r\nBcc: x@evil.example", "lists": [mailing_list.pk]}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["name"]
    assert not Subscriber.objects.exists()


def test_subscriber_create_needs_a_list(editor_api):
    response = editor_api.post("/api/v1/subscribers/", {"email": "a@example.org", "lists": []}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["lists"]


def test_subscriber_patch_updates_the_profile_through_the_service(editor_api):
    subscriber = SubscriberFactory(name="Old", attributes={"a": "1"})

    response = editor_api.patch(f"/api/v1/subscribers/{subscriber.pk}/",
                                {"name": "New", "attributes": {"b": 2}, "time_zone": "Asia/Tokyo"}, format="json")

    assert response.status_code == 200, response.json()
    subscriber.refresh_from_db()
    assert (subscriber.name, subscriber.attributes, subscriber.time_zone) == ("New", {"b": 2}, "Asia/Tokyo")


def test_subscriber_patch_to_an_address_someone_has_is_400_and_changes_nothing(editor_api):
    SubscriberFactory(email="taken@example.org")
    subscriber = SubscriberFactory(email="mine@example.org")

    response = editor_api.patch(f"/api/v1/subscribers/{subscriber.pk}/", {"email": "TAKEN@example.org"},
                                format="json")

    assert response.status_code == 400
    assert response.json() == {"email": ["Another subscriber already has this address."]}
    subscriber.refresh_from_db()
    assert subscriber.email == "mine@example.org"


def test_subscriber_patch_with_a_bad_time_zone_is_400(editor_api):
    subscriber = SubscriberFactory()

    response = editor_api.patch(f"/api/v1/subscribers/{subscriber.pk}/", {"time_zone": "Mars/Base"}, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["time_zone"]


def test_subscriber_search_by_query_list_status_and_tag(viewer_api):
    news, other = MailingListFactory(), MailingListFactory()
    ada = SubscriptionFactory(mailing_list=news, subscriber__email="ada@example.org",
                              subscriber__attributes={"plan": "pro"}).subscriber
    SubscriptionFactory(mailing_list=news, subscriber__email="bob@example.org", status="unconfirmed")
    SubscriptionFactory(mailing_list=other, subscriber__email="adam@example.org")
    vip = Tag.objects.create(name="vip")
    ada.tags.add(vip)

    def emails(query):
        response = viewer_api.get("/api/v1/subscribers/", query)
        assert response.status_code == 200, response.json()
        return [s["email"] for s in response.json()["results"]]

    assert emails({"q": "ada"}) == ["adam@example.org", "ada@example.org"]
    assert emails({"q": "plan:pro"}) == ["ada@example.org"]
    assert emails({"list": news.pk, "status": "confirmed"}) == ["ada@example.org"]
    assert emails({"list": news.pk}) == ["bob@example.org", "ada@example.org"]
    assert emails({"tag": vip.pk}) == ["ada@example.org"]
    assert emails({"q": "ada", "ordering": "email"}) == ["ada@example.org", "adam@example.org"]


def test_subscriber_hygiene_flags_are_shown_and_filter_the_search(viewer_api):
    news = MailingListFactory()
    SubscriptionFactory(mailing_list=news, subscriber__email="ada@example.org")
    SubscriptionFactory(mailing_list=news, subscriber__email="info@example.org", subscriber__is_role_address=True)
    SubscriptionFactory(mailing_list=news, subscriber__email="x@mailinator.com",
                        subscriber__is_disposable_address=True)

    def found(flag):
        response = viewer_api.get("/api/v1/subscribers/", {"flag": flag, "ordering": "email"})
        assert response.status_code == 200, response.json()
        return [(s["email"], s["is_role_address"], s["is_disposable_address"], s["has_no_mx"])
                for s in response.json()["results"]]

    assert found("role") == [("info@example.org", True, False, False)]
    assert found("disposable") == [("x@mailinator.com", False, True, False)]
    assert found("any") == [("info@example.org", True, False, False), ("x@mailinator.com", False, True, False)]
    assert found("no_mx") == []
    response = viewer_api.get("/api/v1/subscribers/", {"flag": "spammy"})
    assert response.status_code == 400 and "flag" in response.json()


def test_subscriber_search_by_segment(viewer_api):
    SubscriberFactory(email="ada@gmail.example")
    SubscriberFactory(email="bob@other.example")
    segment = Segment.objects.create(name="Gmail", conditions=[{"field": "email", "op": "contains", "value": "gmail"}])

    response = viewer_api.get("/api/v1/subscribers/", {"segment": segment.pk})

    assert [s["email"] for s in response.json()["results"]] == ["ada@gmail.example"]
    assert viewer_api.get("/api/v1/subscribers/", {"segment": 999999}).json() == {
        "segment": ["There is no segment with this id."]}


def test_subscriber_list_pages_with_a_cursor(viewer_api):
    for n in range(5):
        SubscriberFactory(email=f"p{n}@example.org")

    first = viewer_api.get("/api/v1/subscribers/", {"page_size": 2}).json()
    second = viewer_api.get(first["next"]).json()
    third = viewer_api.get(second["next"]).json()

    pages = [[s["email"] for s in page["results"]] for page in (first, second, third)]
    assert pages == [["p4@example.org", "p3@example.org"], ["p2@example.org", "p1@example.org"], ["p0@example.org"]]
    assert third["next"] is None
    assert "count" not in first


def test_subscriber_tag_and_untag(editor_api):
    subscriber = SubscriberFactory()

    tagged = editor_api.post(f"/api/v1/subscribers/{subscriber.pk}/tag/", {"tags": ["b", "a"]}, format="json")
    untagged = editor_api.post(f"/api/v1/subscribers/{subscriber.pk}/untag/", {"tags": ["a", "zzz"]}, format="json")

    assert tagged.json()["tags"] == ["a", "b"]
    assert untagged.json()["tags"] == ["b"]
    assert list(subscriber.tags.values_list("name", flat=True)) == ["b"]


def test_subscriber_delete(editor_api):
    subscriber = SubscriberFactory()

    response = editor_api.delete(f"/api/v1/subscribers/{subscriber.pk}/")

    assert response.status_code == 204
    assert not Subscriber.objects.exists()


def test_subscriber_gdpr_export_and_wipe(editor_api):
    subscription = SubscriptionFactory(subscriber__email="ada@example.org", subscriber__name="Ada")
    subscriber = subscription.subscriber

    exported = editor_api.get(f"/api/v1/subscribers/{subscriber.pk}/export/")
    wiped = editor_api.post(f"/api/v1/subscribers/{subscriber.pk}/wipe/")

    assert exported.status_code == 200
    assert (exported.json()["email"], exported.json()["name"]) == ("ada@example.org", "Ada")
    assert exported.json()["subscriptions"][0]["status"] == "confirmed"
    assert wiped.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.email.startswith("erased-") and subscriber.name == ""
    assert ErasedAddress.objects.count() == 1
    assert subscriber.subscriptions.get().status == "unsubscribed"


def test_viewer_cannot_export_personal_data(viewer_api):
    subscriber = SubscriberFactory()

    assert viewer_api.get(f"/api/v1/subscribers/{subscriber.pk}/export/").status_code == 403


# --- Bulk upsert -------------------------------------------------------------------------------------


def test_bulk_upsert_creates_updates_and_reports_bad_items_by_index(editor_api):
    mailing_list = MailingListFactory()
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="known@example.org", subscriber__name="Old")
    Suppression.objects.create(email="gone@example.org", reason="hard_bounce")

    response = editor_api.post("/api/v1/subscribers/bulk/", {
        "list": mailing_list.pk, "tags": ["shop"],
        "subscribers": [
            {"email": "new@example.org", "name": "New", "attributes": {"plan": "pro", "seats": 3}},
            {"email": "Known@example.org", "name": "Renamed"},
            {"email": "broken"},
            {"email": "NEW@example.org"},
            {"email": "gone@example.org"},
            "not an object",
            {"email": "x@example.org", "colour": "red"},
        ],
    }, format="json")

    assert response.status_code == 200, response.json()
    body = response.json()
    assert {k: body[k] for k in ("created", "updated", "skipped", "invalid")} == {
        "created": 1, "updated": 1, "skipped": 2, "invalid": 3}
    assert body["problems"] == [
        {"index": 2, "email": "broken", "reason": "invalid email address"},
        {"index": 3, "email": "NEW@example.org", "reason": "duplicate of item 0"},
        {"index": 4, "email": "gone@example.org", "reason": "on the suppression list"},
        {"index": 5, "email": "", "reason": "Each item must be an object with at least an email."},
        {"index": 6, "email": "x@example.org",
         "reason": "Unknown field 'colour'; use attributes, email, name, time_zone."},
    ]
    new = Subscriber.objects.get(email="new@example.org")
    assert new.attributes == {"plan": "pro", "seats": 3}  # typed, as the single-subscriber API stores them
    assert Subscriber.objects.get(email="known@example.org").name == "Renamed"
    assert new.subscriptions.get().status == "confirmed" and new.subscriptions.get().source == "import"
    assert list(new.tags.values_list("name", flat=True)) == ["shop"]


def test_bulk_add_mode_leaves_known_subscribers_alone(editor_api):
    mailing_list = MailingListFactory()
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="known@example.org", subscriber__name="Old")

    response = editor_api.post("/api/v1/subscribers/bulk/", {
        "list": mailing_list.pk, "mode": "add", "subscribers": [{"email": "known@example.org", "name": "New"}],
    }, format="json")

    assert response.json()["skipped"] == 1
    assert Subscriber.objects.get().name == "Old"


def test_bulk_unconfirmed_asks_each_new_subscriber_to_confirm(editor_api, django_capture_on_commit_callbacks):
    mailing_list = MailingListFactory(opt_in="double")

    with django_capture_on_commit_callbacks(execute=True):
        response = editor_api.post("/api/v1/subscribers/bulk/", {
            "list": mailing_list.pk, "confirmed": False,
            "subscribers": [{"email": "a@example.org"}, {"email": "b@example.org"}],
        }, format="json")

    assert response.json()["created"] == 2
    assert set(Subscription.objects.values_list("status", flat=True)) == {"unconfirmed"}
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.org", "b@example.org"]


def test_bulk_refuses_more_than_ten_thousand_items_and_writes_nothing(editor_api):
    mailing_list = MailingListFactory()

    response = editor_api.post("/api/v1/subscribers/bulk/", {
        "list": mailing_list.pk, "subscribers": [{"email": f"a{n}@example.org"} for n in range(10_001)],
    }, format="json")

    assert response.status_code == 400
    assert response.json() == {"subscribers": ["At most 10000 subscribers per request."]}
    assert not Subscriber.objects.exists()


# --- Subscriptions -------------------------------------------------------------------------------


def test_subscription_create_with_double_opt_in_sends_a_confirmation_then_confirm(editor_api,
                                                                                  django_capture_on_commit_callbacks):
    mailing_list = MailingListFactory(opt_in="single")

    with django_capture_on_commit_callbacks(execute=True):
        created = editor_api.post("/api/v1/subscriptions/", {
            "list": mailing_list.pk, "email": "ada@example.org", "double_opt_in": True}, format="json")
    subscription_id = created.json()["id"]
    confirmed = editor_api.post(f"/api/v1/subscriptions/{subscription_id}/confirm/")

    assert created.status_code == 201, created.json()
    assert created.json()["status"] == "unconfirmed"
    assert [m.to[0] for m in mail.outbox] == ["ada@example.org"]
    assert confirmed.json()["status"] == "confirmed"
    assert Subscription.objects.get().confirmed_at is not None


def test_subscription_create_without_double_opt_in_is_confirmed_at_once(editor_api):
    mailing_list = MailingListFactory(opt_in="double")

    response = editor_api.post("/api/v1/subscriptions/", {
        "list": mailing_list.pk, "email": "ada@example.org", "double_opt_in": False}, format="json")

    assert response.json()["status"] == "confirmed"
    assert response.json()["source"] == "api"


def test_subscription_unsubscribe_and_filtering(editor_api):
    subscription = SubscriptionFactory()
    SubscriptionFactory()

    response = editor_api.post(f"/api/v1/subscriptions/{subscription.pk}/unsubscribe/", {"reason": "CRM"},
                               format="json")
    listed = editor_api.get("/api/v1/subscriptions/", {"status": "unsubscribed"}).json()["results"]

    assert response.json()["status"] == "unsubscribed"
    assert response.json()["unsubscribe_reason"] == "CRM"
    assert [s["id"] for s in listed] == [subscription.pk]


# --- Tags, segments, suppressions --------------------------------------------------------------------


def test_tag_create_list_and_delete(editor_api):
    created = editor_api.post("/api/v1/tags/", {"name": " vip "}, format="json")
    again = editor_api.post("/api/v1/tags/", {"name": "vip"}, format="json")
    listed = editor_api.get("/api/v1/tags/").json()["results"]
    deleted = editor_api.delete(f"/api/v1/tags/{created.json()['id']}/")

    assert created.status_code == 201 and created.json()["name"] == "vip"
    assert again.status_code == 400
    assert [t["name"] for t in listed] == ["vip"]
    assert deleted.status_code == 204 and not Tag.objects.exists()


def test_segment_create_validates_conditions_and_counts(editor_api):
    SubscriberFactory(email="ada@gmail.example")
    SubscriberFactory(email="bob@other.example")

    bad = editor_api.post("/api/v1/segments/", {
        "name": "Bad", "conditions": [{"field": "email", "op": "sounds_like", "value": "x"}]}, format="json")
    good = editor_api.post("/api/v1/segments/", {
        "name": "Gmail", "conditions": [{"field": "email", "op": "contains", "value": "gmail"}]}, format="json")
    count = editor_api.get(f"/api/v1/segments/{good.json()['id']}/count/")

    assert bad.status_code == 400
    assert bad.json()["conditions"][0].startswith("Condition 1: Choose how to compare email address")
    assert good.status_code == 201, good.json()
    assert count.json() == {"count": 1}
    assert Segment.objects.count() == 1


def test_segment_refers_to_a_list_that_does_not_exist(editor_api):
    response = editor_api.post("/api/v1/segments/", {
        "name": "Ghost", "conditions": [{"field": "list", "op": "confirmed", "value": 999999}]}, format="json")

    assert response.status_code == 400
    assert response.json() == {"conditions": ["Condition 1: There is no list with id 999999 any more; choose another."]}


def test_suppression_create_is_idempotent_and_delete_lifts_it(editor_api):
    first = editor_api.post("/api/v1/suppressions/", {"email": "Gone@Example.org", "reason": "complaint"},
                            format="json")
    second = editor_api.post("/api/v1/suppressions/", {"email": "gone@example.org"}, format="json")
    deleted = editor_api.delete(f"/api/v1/suppressions/{first.json()['id']}/")

    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["email"] == "gone@example.org"
    assert second.json()["reason"] == "complaint"
    assert deleted.status_code == 204 and not Suppression.objects.exists()


def test_suppression_with_an_unknown_reason_is_400(editor_api):
    response = editor_api.post("/api/v1/suppressions/", {"email": "a@example.org", "reason": "dislike"},
                               format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["reason"]
    assert not Suppression.objects.exists()


# --- Unsubscribe endpoint ------------------------------------------------------------------------------


def test_unsubscribe_endpoint_from_one_list(editor_api):
    news, other = MailingListFactory(), MailingListFactory()
    subscriber = SubscriptionFactory(mailing_list=news, subscriber__email="ada@example.org").subscriber
    SubscriptionFactory(mailing_list=other, subscriber=subscriber)

    response = editor_api.post("/api/v1/unsubscribe/", {"email": "ADA@example.org", "list": news.pk}, format="json")

    assert response.json() == {"email": "ADA@example.org", "found": True, "unsubscribed": 1}
    assert dict(subscriber.subscriptions.values_list("mailing_list_id", "status")) == {
        news.pk: "unsubscribed", other.pk: "confirmed"}


def test_unsubscribe_endpoint_from_every_list_is_idempotent(editor_api):
    subscriber = SubscriptionFactory(subscriber__email="ada@example.org").subscriber
    SubscriptionFactory(subscriber=subscriber)

    first = editor_api.post("/api/v1/unsubscribe/", {"email": "ada@example.org"}, format="json")
    second = editor_api.post("/api/v1/unsubscribe/", {"email": "ada@example.org"}, format="json")
    unknown = editor_api.post("/api/v1/unsubscribe/", {"email": "nobody@example.org"}, format="json")

    assert first.json()["unsubscribed"] == 2
    assert second.json()["unsubscribed"] == 0
    assert unknown.json() == {"email": "nobody@example.org", "found": False, "unsubscribed": 0}
    assert set(subscriber.subscriptions.values_list("status", flat=True)) == {"unsubscribed"}
