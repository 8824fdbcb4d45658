import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from lists import services
from lists.models import ErasedAddress, MailingList, Segment, Subscriber, Subscription, Suppression, Tag
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def data():
    mailing_list = MailingListFactory(name="Weekly Letter", opt_in=MailingList.DOUBLE)
    ada = SubscriberFactory(email="ada@example.org")
    grace = SubscriberFactory(email="grace@example.org")
    waiting = SubscriptionFactory(subscriber=ada, mailing_list=mailing_list, status=Subscription.UNCONFIRMED)
    confirmed = SubscriptionFactory(subscriber=grace, mailing_list=mailing_list, status=Subscription.CONFIRMED)
    Tag.objects.create(name="vip")
    Suppression.objects.create(email="bounced@example.org", reason=Suppression.HARD_BOUNCE)
    Segment.objects.create(name="Pros", conditions=[{"field": "attributes.plan", "op": "eq", "value": "pro"}])
    ErasedAddress.objects.create(digest=services.erased_digest("gone@example.org"))
    return {"list": mailing_list, "ada": ada, "grace": grace, "waiting": waiting, "confirmed": confirmed}


MODELS = ["mailinglist", "subscriber", "subscription", "suppression", "tag", "segment", "erasedaddress"]


@pytest.mark.parametrize("model", MODELS)
def test_every_lists_model_has_a_working_changelist_with_search(admin_client, data, model):
    url = reverse(f"admin:lists_{model}_changelist")
    assert admin_client.get(url).status_code == 200
    assert admin_client.get(url, {"q": "example"}).status_code == 200


@pytest.mark.parametrize("model", ["mailinglist", "subscriber", "subscription", "suppression", "tag", "segment"])
def test_change_and_add_pages_load(admin_client, data, model):
    obj = {"mailinglist": data["list"], "subscriber": data["ada"], "subscription": data["waiting"],
           "suppression": Suppression.objects.get(), "tag": Tag.objects.get(), "segment": Segment.objects.get()}[model]
    assert admin_client.get(reverse(f"admin:lists_{model}_change", args=[obj.pk])).status_code == 200
    assert admin_client.get(reverse(f"admin:lists_{model}_add")).status_code == 200


def test_the_subscriber_changelist_filters_by_list_and_status(admin_client, data):
    response = admin_client.get(reverse("admin:lists_subscriber_changelist"),
                                {"subscriptions__status": "confirmed", "subscriptions__mailing_list__id__exact": data["list"].pk})
    assert [s.email for s in response.context["cl"].result_list] == ["grace@example.org"]


def _act(client, model, action, objects, **extra):
    return client.post(reverse(f"admin:lists_{model}_changelist"),
                       {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in objects], **extra}, follow=True)


def test_confirm_selected_subscriptions(admin_client, data):
    response = _act(admin_client, "subscription", "confirm_selected", [data["waiting"], data["confirmed"]])
    assert "1 subscription(s) confirmed." in response.content.decode()
    data["waiting"].refresh_from_db()
    assert data["waiting"].status == Subscription.CONFIRMED


def test_unsubscribe_selected_subscriptions(admin_client, data):
    _act(admin_client, "subscription", "unsubscribe_selected", [data["confirmed"]])
    data["confirmed"].refresh_from_db()
    assert (data["confirmed"].status, data["confirmed"].unsubscribe_reason) == ("unsubscribed", "By admin in the admin")


def test_resend_confirmation_queues_a_mail_for_unconfirmed_only(admin_client, data, django_capture_on_commit_callbacks, mailoutbox):
    with django_capture_on_commit_callbacks(execute=True):
        response = _act(admin_client, "subscription", "resend_confirmation", [data["waiting"], data["confirmed"]])
    assert "1 confirmation mail(s) queued." in response.content.decode()
    assert [m.to for m in mailoutbox] == [["ada@example.org"]]


def test_tag_and_untag_selected_subscribers(admin_client, data):
    _act(admin_client, "subscriber", "add_tag", [data["ada"], data["grace"]], tag="beta")
    assert set(Subscriber.objects.filter(tags__name="beta").values_list("email", flat=True)) == {
        "ada@example.org", "grace@example.org"}
    _act(admin_client, "subscriber", "remove_tag", [data["ada"]], tag="beta")
    assert list(Subscriber.objects.filter(tags__name="beta").values_list("email", flat=True)) == ["grace@example.org"]


def test_the_tag_action_needs_a_tag_name(admin_client, data):
    response = _act(admin_client, "subscriber", "add_tag", [data["ada"]], tag="")
    assert "Type a tag name in the box next to the action." in response.content.decode()
    assert data["ada"].tags.count() == 0


def test_unsubscribe_all_suppress_and_blocklist_selected_subscribers(admin_client, data):
    _act(admin_client, "subscriber", "unsubscribe_all", [data["grace"]])
    _act(admin_client, "subscriber", "suppress_addresses", [data["ada"]])
    _act(admin_client, "subscriber", "blocklist", [data["ada"]])
    data["confirmed"].refresh_from_db()
    data["ada"].refresh_from_db()
    assert data["confirmed"].status == Subscription.UNSUBSCRIBED
    assert Suppression.objects.get(email="ada@example.org").reason == Suppression.MANUAL
    assert data["ada"].status == Subscriber.BLOCKLISTED


def test_unsuppress_selected_addresses(admin_client, data):
    _act(admin_client, "suppression", "unsuppress", list(Suppression.objects.all()))
    assert Suppression.objects.count() == 0


def test_gdpr_wipe_selected_subscribers(admin_client, data):
    response = _act(admin_client, "subscriber", "wipe", [data["ada"]])
    assert "1 subscriber(s) erased." in response.content.decode()
    data["ada"].refresh_from_db()
    assert data["ada"].email.endswith("@invalid")
    assert services.is_erased("ada@example.org")


def test_erased_addresses_are_found_by_typing_the_address(admin_client, data):
    url = reverse("admin:lists_erasedaddress_changelist")
    found = admin_client.get(url, {"q": "Gone@Example.org"})
    missing = admin_client.get(url, {"q": "here@example.org"})
    assert len(found.context["cl"].result_list) == 1
    assert len(missing.context["cl"].result_list) == 0


def test_archive_selected_lists(admin_client, data):
    _act(admin_client, "mailinglist", "archive", [data["list"]])
    data["list"].refresh_from_db()
    assert data["list"].is_archived is True
