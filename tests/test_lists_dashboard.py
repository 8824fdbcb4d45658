import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from lists import services, views
from lists.models import ErasedAddress, MailingList, Subscriber, Subscription, Tag
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter", opt_in=MailingList.DOUBLE)


@pytest.fixture
def ada(newsletter):
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada", attributes={"plan": "pro"})
    SubscriptionFactory(subscriber=subscriber, mailing_list=newsletter, status=Subscription.CONFIRMED)
    return subscriber


def _row(model, pk):
    return model.objects.values().get(pk=pk)


# --- Role matrix -----------------------------------------------------------------------------


def _read_pages(newsletter, ada):
    return [
        reverse("lists:list_index"),
        reverse("lists:list_detail", args=[newsletter.pk]),
        reverse("lists:subscriber_index"),
        reverse("lists:subscriber_detail", args=[ada.pk]),
    ]


def test_viewer_and_editor_read_every_page(victor_client, bob_client, newsletter, ada):
    for url in _read_pages(newsletter, ada):
        assert victor_client.get(url).status_code == 200, url
        assert bob_client.get(url).status_code == 200, url


def test_mallory_is_denied_every_page(mallory_client, newsletter, ada):
    for url in _read_pages(newsletter, ada):
        assert mallory_client.get(url).status_code == 403, url


def test_anonymous_visitors_are_sent_to_sign_in(client, newsletter, ada):
    for url in _read_pages(newsletter, ada):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=")


def test_viewer_sees_no_edit_controls(victor_client, newsletter, ada):
    detail = victor_client.get(reverse("lists:list_detail", args=[newsletter.pk])).content.decode()
    person = victor_client.get(reverse("lists:subscriber_detail", args=[ada.pk])).content.decode()
    assert "Edit list" not in detail and "Add one subscriber" not in detail
    assert "Delete subscriber" not in person and "Edit profile" not in person


def _change_requests(newsletter, ada):
    """(method, url, data) for every changing page; each must be refused to a viewer."""
    sub = lambda name: reverse(f"lists:subscriber_{name}", args=[ada.pk])  # noqa: E731
    return [
        ("get", reverse("lists:list_create"), None),
        ("post", reverse("lists:list_create"), {"name": "Sneaky"}),
        ("post", reverse("lists:list_edit", args=[newsletter.pk]), {"name": "Renamed"}),
        ("post", reverse("lists:list_delete", args=[newsletter.pk]), {}),
        ("post", reverse("lists:list_add_subscriber", args=[newsletter.pk]), {"email": "eve@example.org"}),
        ("post", sub("edit"), {"email": "eve@example.org"}),
        ("post", sub("unsubscribe"), {}),
        ("post", sub("tag"), {"tags": "vip"}),
        ("post", sub("untag"), {"tag": "vip"}),
        ("post", sub("delete"), {}),
        ("post", sub("wipe"), {}),
        ("post", sub("export"), {}),
    ]


@pytest.mark.parametrize("who", ["victor_client", "mallory_client"])
def test_viewer_and_mallory_cannot_change_anything(request, who, newsletter, ada):
    client = request.getfixturevalue(who)
    before = (_row(MailingList, newsletter.pk), _row(Subscriber, ada.pk), list(Subscription.objects.values()))
    for method, url, data in _change_requests(newsletter, ada):
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        assert response.status_code == 403, url
    after = (_row(MailingList, newsletter.pk), _row(Subscriber, ada.pk), list(Subscription.objects.values()))
    assert after == before
    assert MailingList.objects.count() == 1 and Tag.objects.count() == 0


def test_actions_refuse_get(bob_client, ada):
    for name in ("unsubscribe", "tag", "untag", "delete", "wipe", "export"):
        assert bob_client.get(reverse(f"lists:subscriber_{name}", args=[ada.pk])).status_code == 405


# --- Lists ------------------------------------------------------------------------------------


def _list_form(**overrides):
    data = {
        "name": "Product News", "description": "", "opt_in": "double", "from_name": "Shop", "from_email": "news@shop.example",
        "reply_to": "", "postal_address": "1 Main St", "consent_text": "I agree.", "form_fields": "",
        "thank_you_message": MailingList._meta.get_field("thank_you_message").default, "thank_you_url": "",
        "confirmed_message": "Welcome!", "confirmation_subject": "Confirm {{ list.name }}",
        "confirmation_body": "Click {{ confirm_url }}", "accent_color": "#123456", "time_zone": "",
    }
    return data | overrides


def test_editor_creates_a_list(bob_client):
    response = bob_client.post(reverse("lists:list_create"), _list_form(form_fields="company | Company | required\nrole"))
    mailing_list = MailingList.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("lists:list_detail", args=[mailing_list.pk])
    assert mailing_list.name == "Product News"
    assert mailing_list.form_fields == [
        {"name": "company", "label": "Company", "required": True},
        {"name": "role", "label": "Role", "required": False},
    ]


def test_a_single_opt_in_list_gets_a_thank_you_text_without_confirmation(bob_client):
    bob_client.post(reverse("lists:list_create"), _list_form(opt_in="single"))
    assert MailingList.objects.get().thank_you_message == "Thanks! You're subscribed."


@pytest.mark.parametrize("overrides, field, message", [
    ({"confirmation_body": "No link"}, "confirmation_body", "Put {{ confirm_url }} in the text"),
    ({"confirmation_body": "{% if %}{{ confirm_url }}"}, "confirmation_body", "This template has an error"),
    ({"confirmation_subject": "Hi\r\nBcc: x@y.org"}, "confirmation_subject", "cannot contain line breaks"),
    ({"accent_color": "red"}, "accent_color", "Use a colour such as #2456d6"),
    ({"form_fields": "Company Name"}, "form_fields", "cannot be a field name"),
    ({"form_fields": "email"}, "form_fields", "cannot be a field name"),
    ({"time_zone": "Mars/Base"}, "time_zone", "Unknown time zone"),
])
def test_list_form_refuses_bad_settings(bob_client, overrides, field, message):
    response = bob_client.post(reverse("lists:list_create"), _list_form(**overrides))
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert MailingList.objects.count() == 0


def test_editor_edits_a_list(bob_client, newsletter):
    bob_client.post(reverse("lists:list_edit", args=[newsletter.pk]), _list_form(name="Renamed", is_archived="on"))
    newsletter.refresh_from_db()
    assert (newsletter.name, newsletter.is_archived, newsletter.accent_color) == ("Renamed", True, "#123456")


def test_list_detail_shows_counts_signup_url_and_the_snippet_to_copy(victor_client, newsletter, ada):
    SubscriptionFactory(mailing_list=newsletter, status=Subscription.UNCONFIRMED)
    response = victor_client.get(reverse("lists:list_detail", args=[newsletter.pk]))
    html = response.content.decode()
    assert response.context["counts"] == {"unconfirmed": 1, "confirmed": 1, "unsubscribed": 0, "total": 2}
    assert f"http://testserver/s/{newsletter.public_id}/" in html
    assert '<textarea id="embed-snippet" readonly' in html
    assert 'data-copy="#embed-snippet"' in html
    assert f"/s/{newsletter.public_id}/embed" in html
    assert "Import CSV" not in html  # a viewer may not import


def test_list_detail_offers_import_to_an_editor(bob_client, newsletter):
    html = bob_client.get(reverse("lists:list_detail", args=[newsletter.pk])).content.decode()
    assert f'href="/lists/{newsletter.pk}/import/"' in html and "Import CSV" in html


def test_optional_links_are_left_out_until_their_page_exists():
    assert views._optional_url("lists:no_such_page", 1) is None
    assert views._optional_url("lists:list_detail", 7) == "/lists/7/"
    assert views._optional_url("lists:subscriber_index", 7) == "/subscribers/?list=7"


def test_list_index_shows_counts_per_list(victor_client, newsletter, ada):
    other = MailingListFactory(name="Offers")
    SubscriptionFactory(mailing_list=other, status=Subscription.UNSUBSCRIBED)
    response = victor_client.get(reverse("lists:list_index"))
    counts = {l.name: l.counts for l in response.context["lists"]}
    assert counts == {
        "Offers": {"unconfirmed": 0, "confirmed": 0, "unsubscribed": 1},
        "Weekly Letter": {"unconfirmed": 0, "confirmed": 1, "unsubscribed": 0},
    }


def test_editor_deletes_a_list_after_confirming(bob_client, newsletter, ada):
    page = bob_client.get(reverse("lists:list_delete", args=[newsletter.pk]))
    assert "its 1 subscription," in page.content.decode()
    response = bob_client.post(reverse("lists:list_delete", args=[newsletter.pk]))
    assert response.status_code == 302
    assert MailingList.objects.count() == 0
    assert Subscription.objects.count() == 0
    assert Subscriber.objects.filter(pk=ada.pk).exists()


def test_editor_adds_one_subscriber_who_gets_a_confirmation(bob_client, newsletter, django_capture_on_commit_callbacks, mailoutbox):
    with django_capture_on_commit_callbacks(execute=True):
        response = bob_client.post(reverse("lists:list_add_subscriber", args=[newsletter.pk]),
                                   {"email": "grace@example.org", "name": "Grace"})
    subscription = Subscription.objects.select_related("subscriber").get()
    assert response["Location"] == reverse("lists:subscriber_detail", args=[subscription.subscriber_id])
    assert (subscription.status, subscription.source, subscription.consent_form) == ("unconfirmed", "admin", "dashboard")
    assert subscription.consent_text == "Added by bob in the dashboard."
    assert [m.to for m in mailoutbox] == [["grace@example.org"]]


def test_editor_adds_a_subscriber_vouching_for_consent(bob_client, newsletter, mailoutbox):
    bob_client.post(reverse("lists:list_add_subscriber", args=[newsletter.pk]),
                    {"email": "grace@example.org", "confirmed": "on"})
    subscription = Subscription.objects.get()
    assert subscription.status == Subscription.CONFIRMED
    assert subscription.consent_text == "Added by bob in the dashboard, who confirmed the subscriber agreed."
    assert mailoutbox == []


def test_adding_a_bad_address_says_why_and_adds_nothing(bob_client, newsletter):
    response = bob_client.post(reverse("lists:list_add_subscriber", args=[newsletter.pk]), {"email": "nope"}, follow=True)
    assert "Enter a valid email address, such as name@example.com." in response.content.decode()
    assert Subscriber.objects.count() == 0


# --- Subscriber index -------------------------------------------------------------------------


def test_subscriber_index_pages_with_a_cursor_and_never_counts(victor_client, newsletter):
    for n in range(views.PAGE_SIZE + 5):
        SubscriptionFactory(mailing_list=newsletter, subscriber__email=f"reader{n:03d}@example.org")
    with CaptureQueriesContext(connection) as queries:
        first = victor_client.get(reverse("lists:subscriber_index"))
    assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    emails = [s.email for s in first.context["subscribers"]]
    assert len(emails) == views.PAGE_SIZE
    assert emails[0] == "reader054@example.org"
    next_after = first.context["next_after"]
    assert f"after={next_after}" in first.content.decode()

    second = victor_client.get(reverse("lists:subscriber_index"), {"after": next_after})
    assert [s.email for s in second.context["subscribers"]] == [f"reader{n:03d}@example.org" for n in range(4, -1, -1)]
    assert second.context["next_after"] is None


def test_subscriber_index_filters_by_list_status_tag_and_search(victor_client, newsletter, ada):
    offers = MailingListFactory(name="Offers")
    grace = SubscriberFactory(email="grace@example.org", name="Grace")
    SubscriptionFactory(subscriber=grace, mailing_list=offers, status=Subscription.UNSUBSCRIBED)
    services.tag(grace, "vip")

    def emails(**params):
        response = victor_client.get(reverse("lists:subscriber_index"), params)
        return [s.email for s in response.context["subscribers"]]

    assert emails(list=newsletter.pk) == ["ada@example.org"]
    assert emails(list=offers.pk, status="unsubscribed") == ["grace@example.org"]
    assert emails(list=offers.pk, status="confirmed") == []
    assert emails(tag="vip") == ["grace@example.org"]
    assert emails(q="ada") == ["ada@example.org"]
    assert emails(q="nobody") == []
    assert emails(list="junk", status="junk") == ["grace@example.org", "ada@example.org"]
    assert emails(tag="no-such-tag") == []
    assert emails(list=offers.pk + 100) == []


def test_subscriber_index_answers_htmx_with_the_table_only(victor_client, ada):
    response = victor_client.get(reverse("lists:subscriber_index"), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "ada@example.org" in html
    assert "<html" not in html and "<form" not in html


# --- Subscriber pages and actions --------------------------------------------------------------


def test_subscriber_detail_shows_profile_lists_and_consent(victor_client, ada):
    Subscription.objects.filter(subscriber=ada).update(consent_ip="203.0.113.5", consent_form="hosted signup page")
    html = victor_client.get(reverse("lists:subscriber_detail", args=[ada.pk])).content.decode()
    assert "<h1>ada@example.org</h1>" in html
    assert "Weekly Letter" in html
    assert "from 203.0.113.5 via hosted signup page" in html
    assert "&quot;plan&quot;: &quot;pro&quot;" in html


def test_editor_edits_a_subscriber(bob_client, ada):
    response = bob_client.post(reverse("lists:subscriber_edit", args=[ada.pk]), {
        "email": "ada@lovelace.example", "name": "Ada Lovelace", "time_zone": "Europe/London",
        "attributes": '{"plan": "team"}'})
    assert response.status_code == 302
    row = _row(Subscriber, ada.pk)
    assert (row["email"], row["name"], row["time_zone"], row["attributes"]) == (
        "ada@lovelace.example", "Ada Lovelace", "Europe/London", {"plan": "team"})


@pytest.mark.parametrize("data, field, message", [
    ({"email": "grace@example.org"}, "email", "Another subscriber already has this address."),
    ({"attributes": "{not json"}, "attributes", "This is not valid JSON"),
    ({"attributes": '{"a": "b\\nc"}'}, "attributes", "cannot contain line breaks"),
    ({"name": "Ada\r\nBcc: x@y.org"}, "name", "cannot contain line breaks"),
])
def test_editing_a_subscriber_with_bad_input_changes_nothing(bob_client, ada, data, field, message):
    SubscriberFactory(email="grace@example.org")
    before = _row(Subscriber, ada.pk)
    form = {"email": "ada@example.org", "name": "Ada", "time_zone": "", "attributes": "{}"} | data
    response = bob_client.post(reverse("lists:subscriber_edit", args=[ada.pk]), form)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert _row(Subscriber, ada.pk) == before


def test_editor_unsubscribes_from_one_list_then_all(bob_client, ada, newsletter):
    offers = MailingListFactory(name="Offers")
    SubscriptionFactory(subscriber=ada, mailing_list=offers)
    url = reverse("lists:subscriber_unsubscribe", args=[ada.pk])
    bob_client.post(url, {"list": newsletter.pk})
    assert dict(ada.subscriptions.values_list("mailing_list__name", "status")) == {
        "Weekly Letter": "unsubscribed", "Offers": "confirmed"}
    assert ada.subscriptions.get(mailing_list=newsletter).unsubscribe_reason == "By bob in the dashboard"
    bob_client.post(url)
    assert set(ada.subscriptions.values_list("status", flat=True)) == {"unsubscribed"}


def test_editor_tags_and_untags_with_htmx(bob_client, ada):
    tagged = bob_client.post(reverse("lists:subscriber_tag", args=[ada.pk]), {"tags": "vip, beta"}, HTTP_HX_REQUEST="true")
    assert sorted(ada.tags.values_list("name", flat=True)) == ["beta", "vip"]
    assert 'id="subscriber-tags"' in tagged.content.decode() and "<html" not in tagged.content.decode()
    bob_client.post(reverse("lists:subscriber_untag", args=[ada.pk]), {"tag": "vip"}, HTTP_HX_REQUEST="true")
    assert list(ada.tags.values_list("name", flat=True)) == ["beta"]


def test_a_bad_tag_is_refused(bob_client, ada):
    response = bob_client.post(reverse("lists:subscriber_tag", args=[ada.pk]), {"tags": " , "}, follow=True)
    assert "Enter at least one tag." in response.content.decode()
    assert Tag.objects.count() == 0


def test_editor_deletes_a_subscriber(bob_client, ada):
    response = bob_client.post(reverse("lists:subscriber_delete", args=[ada.pk]))
    assert response["Location"] == reverse("lists:subscriber_index")
    assert Subscriber.objects.count() == 0


def test_editor_erases_a_subscriber(bob_client, ada):
    response = bob_client.post(reverse("lists:subscriber_wipe", args=[ada.pk]), follow=True)
    ada.refresh_from_db()
    assert ada.email.endswith("@invalid") and ada.name == ""
    assert ErasedAddress.objects.filter(digest=services.erased_digest("ada@example.org")).exists()
    assert "Personal data erased." in response.content.decode()
    assert bob_client.get(reverse("lists:subscriber_edit", args=[ada.pk])).status_code == 302


def test_editor_downloads_the_gdpr_export(bob_client, ada):
    response = bob_client.post(reverse("lists:subscriber_export", args=[ada.pk]))
    assert response["Content-Disposition"] == f'attachment; filename="subscriber-{ada.pk}.json"'
    data = json.loads(response.content)
    assert (data["email"], data["attributes"]) == ("ada@example.org", {"plan": "pro"})
    assert [s["list"] for s in data["subscriptions"]] == ["Weekly Letter"]


# --- Overview and navigation ---------------------------------------------------------------------


def test_overview_shows_subscriber_figures(victor_client, ada, newsletter):
    services.subscribe(newsletter, "grace@example.org", source="form")
    services.unsubscribe(ada)
    response = victor_client.get(reverse("home"))
    [section] = [s for s in response.context["sections"] if s["template"] == "lists/_overview.html"]
    assert section["data"] == {
        "lists": 1, "subscribers": 2, "confirmed": 0,
        "signups_today": 2, "signups_week": 2, "unsubscribes_today": 1, "unsubscribes_week": 1,
    }
    assert "Signups today / last 7 days" in response.content.decode()


def test_navigation_shows_lists_and_subscribers(victor_client):
    labels = [item["label"] for item in victor_client.get(reverse("home")).context["nav"]]
    assert "Lists" in labels and "Subscribers" in labels


# --- In a real browser ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_list_and_subscriber_pages_in_a_browser(page, live_server, bob):
    from playwright.sync_api import expect

    from tests.browser import sign_in
    from tests.conftest import PASSWORD

    newsletter = MailingListFactory(name="Weekly Letter")
    for email in ("ada@example.org", "grace@example.org"):
        SubscriptionFactory(mailing_list=newsletter, subscriber__email=email)
    sign_in(page, live_server, "bob", PASSWORD)
    # the list page shows the snippet with its copy button
    page.goto(f"{live_server.url}/lists/{newsletter.pk}/")
    assert f"/s/{newsletter.public_id}/embed" in page.locator("#embed-snippet").input_value()
    assert page.get_by_role("button", name="Copy the HTML").is_visible()
    # the subscriber search filters the table in place (htmx)
    page.goto(f"{live_server.url}/subscribers/")
    page.get_by_label("Search").fill("grace")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#subscriber-table tbody tr")).to_have_count(1)
    assert page.locator("#subscriber-table tbody tr").inner_text().strip().startswith("grace@example.org")
    # tags are added in place too
    page.locator("#subscriber-table a", has_text="grace@example.org").click()
    page.get_by_label("Add tags").fill("vip")
    page.get_by_role("button", name="Add", exact=True).click()
    expect(page.locator("#subscriber-tags .badge")).to_have_text(["vip"])
