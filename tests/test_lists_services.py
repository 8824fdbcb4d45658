import json
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from lists import services, tokens
from lists.models import ErasedAddress, MailingList, Subscriber, Subscription, Suppression, Tag
from lists.services import InvalidSubscriber
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def double_list():
    return MailingListFactory(name="Weekly Letter", opt_in=MailingList.DOUBLE)


@pytest.fixture
def single_list():
    return MailingListFactory(name="Product News", opt_in=MailingList.SINGLE)


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """Run on_commit callbacks (the confirmation task) as a committed transaction would."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return run


@pytest.fixture
def quick_limits(monkeypatch):
    """A one-second cooldown instead of ten minutes, so a test can wait it out."""
    monkeypatch.setattr(services, "CONFIRMATION_COOLDOWN", 1)
    monkeypatch.setattr(services, "CONFIRMATION_CLAIM", timedelta(0))


def _row(model, pk):
    return model.objects.values().get(pk=pk)


# --- subscribe --------------------------------------------------------------------------------


def test_subscribe_to_single_opt_in_list_confirms_at_once_and_sends_nothing(single_list, run_on_commit, mailoutbox):
    # when
    subscription = run_on_commit(services.subscribe, single_list, "Ada@Example.ORG", name="Ada", source="form")
    # then
    assert subscription.status == Subscription.CONFIRMED
    assert subscription.confirmed_at is not None
    assert subscription.subscriber.email == "Ada@example.org"
    assert mailoutbox == []


def test_subscribe_to_double_opt_in_list_waits_and_sends_one_confirmation_mail(double_list, run_on_commit, mailoutbox):
    subscription = run_on_commit(services.subscribe, double_list, "ada@example.org", name="Ada", source="form")

    assert subscription.status == Subscription.UNCONFIRMED
    assert subscription.confirmed_at is None
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ada@example.org"]
    assert mail.from_email == "Alice's Shop <news@alice.example>"
    assert mail.subject == "Please confirm your subscription"
    assert tokens.confirm_url(subscription) in mail.body
    assert mail.body.startswith("Please confirm that you want to receive mail from Weekly Letter: http://testserver/c/")
    subscription.refresh_from_db()
    assert subscription.confirmation_sent_at is not None


def test_subscribe_records_the_consent(double_list):
    subscription = services.subscribe(
        double_list, "ada@example.org", source="form", ip="203.0.113.7", user_agent="Mozilla/5.0 (X11)",
        form="hosted signup page", consent_text="I agree.",
    )
    row = _row(Subscription, subscription.pk)
    assert row["source"] == "form"
    assert row["consent_ip"] == "203.0.113.7"
    assert row["consent_user_agent"] == "Mozilla/5.0 (X11)"
    assert row["consent_form"] == "hosted signup page"
    assert row["consent_text"] == "I agree."
    assert timezone.now() - row["consent_at"] < timedelta(seconds=5)


def test_subscribe_finds_the_existing_subscriber_whatever_the_case(single_list, double_list):
    first = services.subscribe(single_list, "Ada@Example.org", source="form")
    second = services.subscribe(double_list, "ADA@EXAMPLE.ORG", source="api")
    assert second.subscriber_id == first.subscriber_id
    assert Subscriber.objects.count() == 1


@pytest.mark.parametrize(
    "email, message",
    [
        ("", "Enter an email address."),
        ("not-an-address", "Enter a valid email address, such as name@example.com."),
        ("ada@example.org\r\nBcc: victim@example.net", "The email address cannot contain line breaks or control characters."),
        ("ada\n@example.org", "The email address cannot contain line breaks or control characters."),
        ("a" * 250 + "@example.org", "This email address is too long (at most 254 characters)."),
    ],
)
def test_subscribe_refuses_a_bad_address_and_saves_nothing(single_list, email, message):
    with pytest.raises(InvalidSubscriber) as caught:
        services.subscribe(single_list, email, source="form")
    assert caught.value.field == "email"
    assert str(caught.value) == message
    assert Subscriber.objects.count() == 0
    assert Subscription.objects.count() == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"name": "Ada\r\nBcc: x@example.net"}, "name"),
        ({"attributes": {"city": "Lyon\nBcc: x"}}, "attributes"),
        ({"attributes": {"bad\nkey": "x"}}, "attributes"),
        ({"attributes": ["not", "a", "dict"]}, "attributes"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
        ({"name": "x" * 201}, "name"),
    ],
)
def test_subscribe_refuses_bad_profile_fields_and_saves_nothing(single_list, kwargs, field):
    with pytest.raises(InvalidSubscriber) as caught:
        services.subscribe(single_list, "ada@example.org", source="api", **kwargs)
    assert caught.value.field == field
    assert Subscriber.objects.count() == 0


def test_subscribe_refuses_an_unknown_source(single_list):
    with pytest.raises(ValueError, match="Unknown source 'web'"):
        services.subscribe(single_list, "ada@example.org", source="web")
    assert Subscriber.objects.count() == 0


def test_form_signup_fills_blank_fields_but_never_overwrites_a_profile(single_list):
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada Lovelace", attributes={"plan": "pro"})
    services.subscribe(single_list, "ada@example.org", name="Mallory", time_zone="Europe/Paris",
                       attributes={"plan": "free", "city": "Lyon"}, source="form")
    subscriber.refresh_from_db()
    assert subscriber.name == "Ada Lovelace"
    assert subscriber.attributes == {"plan": "pro", "city": "Lyon"}
    assert subscriber.time_zone == "Europe/Paris"


def test_trusted_sources_update_the_profile(single_list):
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada", attributes={"plan": "pro", "city": "Paris"})
    services.subscribe(single_list, "ada@example.org", name="Ada Lovelace", attributes={"plan": "team"}, source="import")
    subscriber.refresh_from_db()
    assert subscriber.name == "Ada Lovelace"
    assert subscriber.attributes == {"plan": "team", "city": "Paris"}


def test_signing_up_again_leaves_a_confirmed_subscription_alone_and_sends_nothing(double_list, run_on_commit, mailoutbox):
    existing = SubscriptionFactory(mailing_list=double_list, subscriber__email="ada@example.org",
                                   status=Subscription.CONFIRMED, consent_ip="198.51.100.1")
    before = _row(Subscription, existing.pk)

    subscription = run_on_commit(services.subscribe, double_list, "ada@example.org", source="form", ip="203.0.113.9")

    assert subscription.pk == existing.pk
    assert _row(Subscription, existing.pk) == before
    assert mailoutbox == []


def test_unsubscribed_address_on_double_list_comes_back_unconfirmed_with_a_new_mail(double_list, run_on_commit, mailoutbox):
    existing = SubscriptionFactory(mailing_list=double_list, subscriber__email="ada@example.org",
                                   status=Subscription.UNSUBSCRIBED, unsubscribed_at=timezone.now())

    subscription = run_on_commit(services.subscribe, double_list, "ada@example.org", source="form", confirmed=True)

    assert subscription.pk == existing.pk
    assert subscription.status == Subscription.UNCONFIRMED
    assert subscription.unsubscribed_at is None
    assert len(mailoutbox) == 1


def test_unsubscribed_address_on_single_list_is_confirmed_by_a_fresh_signup(single_list):
    SubscriptionFactory(mailing_list=single_list, subscriber__email="ada@example.org", status=Subscription.UNSUBSCRIBED)
    subscription = services.subscribe(single_list, "ada@example.org", source="form")
    assert subscription.status == Subscription.CONFIRMED


def test_an_import_never_revives_an_unsubscribed_subscription(single_list, run_on_commit, mailoutbox):
    existing = SubscriptionFactory(mailing_list=single_list, subscriber__email="ada@example.org",
                                   status=Subscription.UNSUBSCRIBED, unsubscribed_at=timezone.now())
    before = _row(Subscription, existing.pk)

    subscription = run_on_commit(services.subscribe, single_list, "ada@example.org", source="import", confirmed=True)

    assert subscription.status == Subscription.UNSUBSCRIBED
    assert _row(Subscription, existing.pk) == before
    assert mailoutbox == []


def test_confirmed_true_skips_the_confirmation_on_a_double_list(double_list, run_on_commit, mailoutbox):
    subscription = run_on_commit(services.subscribe, double_list, "ada@example.org", source="import", confirmed=True)
    assert subscription.status == Subscription.CONFIRMED
    assert mailoutbox == []


def test_confirmed_false_asks_for_confirmation_even_on_a_single_list(single_list, run_on_commit, mailoutbox):
    subscription = run_on_commit(services.subscribe, single_list, "ada@example.org", source="import", confirmed=False)
    assert subscription.status == Subscription.UNCONFIRMED
    assert [m.to for m in mailoutbox] == [["ada@example.org"]]


def test_confirmed_true_confirms_a_waiting_subscription(double_list):
    SubscriptionFactory(mailing_list=double_list, subscriber__email="ada@example.org", status=Subscription.UNCONFIRMED)
    subscription = services.subscribe(double_list, "ada@example.org", source="api", confirmed=True)
    assert subscription.status == Subscription.CONFIRMED
    assert subscription.confirmed_at is not None


def test_a_suppressed_address_is_recorded_but_never_sent_a_confirmation(double_list, run_on_commit, mailoutbox):
    Suppression.objects.create(email="ada@example.org", reason=Suppression.HARD_BOUNCE)
    subscription = run_on_commit(services.subscribe, double_list, "ADA@example.org", source="form")
    assert subscription.status == Subscription.UNCONFIRMED
    assert mailoutbox == []


def test_a_blocklisted_subscriber_is_never_sent_a_confirmation(double_list, run_on_commit, mailoutbox):
    SubscriberFactory(email="ada@example.org", status=Subscriber.BLOCKLISTED)
    run_on_commit(services.subscribe, double_list, "ada@example.org", source="form")
    assert mailoutbox == []


def test_a_fresh_form_signup_lifts_an_unsubscribe_all_suppression_but_not_a_bounce(double_list):
    Suppression.objects.create(email="ada@example.org", reason=Suppression.UNSUBSCRIBE)
    Suppression.objects.create(email="bob@example.org", reason=Suppression.HARD_BOUNCE)
    services.subscribe(double_list, "ada@example.org", source="form")
    services.subscribe(double_list, "bob@example.org", source="form")
    assert list(Suppression.objects.values_list("email", flat=True)) == ["bob@example.org"]


# --- Confirmation mail ------------------------------------------------------------------------------


def test_confirmation_mail_goes_out_at_most_once_per_ten_minutes(double_list, single_list, run_on_commit, mailoutbox):
    run_on_commit(services.subscribe, double_list, "ada@example.org", source="form")
    run_on_commit(services.subscribe, double_list, "ada@example.org", source="form")
    other = MailingListFactory(opt_in=MailingList.DOUBLE)
    run_on_commit(services.subscribe, other, "ADA@example.org", source="form")
    assert len(mailoutbox) == 1


def test_confirmation_mail_goes_out_at_most_three_times_a_day(double_list, quick_limits, run_on_commit, mailoutbox):
    sent = []
    for attempt in range(4):
        if attempt:
            time.sleep(1.1)  # past the (shortened) cooldown
        run_on_commit(services.subscribe, double_list, "ada@example.org", source="form")
        sent.append(len(mailoutbox))
    assert sent == [1, 2, 3, 3]


def test_request_confirmation_refuses_a_confirmed_subscription(double_list, mailoutbox):
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.CONFIRMED)
    assert services.request_confirmation(subscription) is False
    assert mailoutbox == []


def test_a_confirmation_task_delivered_twice_mails_once(double_list, mailoutbox):
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.UNCONFIRMED)
    assert services.deliver_confirmation(subscription.pk) is True
    assert services.deliver_confirmation(subscription.pk) is False
    assert len(mailoutbox) == 1


def test_confirmation_is_not_sent_when_the_subscription_was_confirmed_meanwhile(double_list, mailoutbox):
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.CONFIRMED)
    assert services.deliver_confirmation(subscription.pk) is False
    assert services.deliver_confirmation(999_999) is False
    assert mailoutbox == []


def test_confirmation_texts_are_liquid_templates(double_list, mailoutbox):
    double_list.confirmation_subject = "{{ subscriber.name | default: 'Friend' }}, confirm {{ list.name }}"
    double_list.confirmation_body = "Hi {{ subscriber.name }}!\nClick {{ confirm_url }} to join {{ list.name | upcase }}."
    double_list.save()
    subscription = SubscriptionFactory(mailing_list=double_list, subscriber__name="Ada", status=Subscription.UNCONFIRMED)

    services.deliver_confirmation(subscription.pk)

    assert mailoutbox[0].subject == "Ada, confirm Weekly Letter"
    assert mailoutbox[0].body == f"Hi Ada!\nClick {tokens.confirm_url(subscription)} to join WEEKLY LETTER."


def test_a_broken_confirmation_template_falls_back_to_the_default_text(double_list, mailoutbox):
    double_list.confirmation_subject = "{% if %}"
    double_list.confirmation_body = "No link here {{ list.name"
    double_list.save()
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.UNCONFIRMED)

    services.deliver_confirmation(subscription.pk)

    assert mailoutbox[0].subject == "Please confirm your subscription"
    assert tokens.confirm_url(subscription) in mailoutbox[0].body


def test_a_subject_template_cannot_inject_headers(double_list, mailoutbox):
    double_list.confirmation_subject = "Confirm\r\nBcc: victim@example.net"
    double_list.save()
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.UNCONFIRMED)

    services.deliver_confirmation(subscription.pk)

    assert mailoutbox[0].subject == "Confirm Bcc: victim@example.net"
    assert "Bcc" not in mailoutbox[0].message().keys()


# --- confirm and unsubscribe ------------------------------------------------------------------------


def test_confirm_confirms_once_and_is_idempotent(double_list):
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.UNCONFIRMED)
    first = services.confirm(subscription, ip="203.0.113.5")
    confirmed_at = first.confirmed_at
    again = services.confirm(subscription, ip="198.51.100.1")
    assert again.status == Subscription.CONFIRMED
    assert again.confirmed_at == confirmed_at
    assert again.confirm_ip == "203.0.113.5"


def test_confirm_does_not_undo_an_unsubscribe(double_list):
    subscription = SubscriptionFactory(mailing_list=double_list, status=Subscription.UNSUBSCRIBED)
    before = _row(Subscription, subscription.pk)
    assert services.confirm(subscription).status == Subscription.UNSUBSCRIBED
    assert _row(Subscription, subscription.pk) == before


def test_unsubscribe_from_one_list(double_list, single_list):
    subscriber = SubscriberFactory()
    mine = SubscriptionFactory(subscriber=subscriber, mailing_list=double_list)
    other = SubscriptionFactory(subscriber=subscriber, mailing_list=single_list)

    assert services.unsubscribe(subscriber, double_list, reason="Too many mails", ip="203.0.113.5") == 1

    mine.refresh_from_db()
    other.refresh_from_db()
    assert (mine.status, mine.unsubscribe_reason, mine.unsubscribe_ip) == ("unsubscribed", "Too many mails", "203.0.113.5")
    assert mine.unsubscribed_at is not None
    assert other.status == Subscription.CONFIRMED


def test_unsubscribe_from_every_list_is_idempotent(double_list, single_list):
    subscriber = SubscriberFactory()
    SubscriptionFactory(subscriber=subscriber, mailing_list=double_list, status=Subscription.UNCONFIRMED)
    SubscriptionFactory(subscriber=subscriber, mailing_list=single_list)
    assert services.unsubscribe(subscriber) == 2
    stamps = list(subscriber.subscriptions.values_list("unsubscribed_at", flat=True))
    assert services.unsubscribe(subscriber) == 0
    assert list(subscriber.subscriptions.values_list("unsubscribed_at", flat=True)) == stamps
    assert set(subscriber.subscriptions.values_list("status", flat=True)) == {"unsubscribed"}


# --- suppression -----------------------------------------------------------------------------------


def test_suppress_is_idempotent_and_lower_cases():
    first = services.suppress("Ada@Example.org", reason="hard_bounce", detail="550 5.1.1 no such user")
    again = services.suppress("ada@example.org", reason="complaint")
    assert again.pk == first.pk
    assert _row(Suppression, first.pk)["email"] == "ada@example.org"
    assert _row(Suppression, first.pk)["reason"] == "hard_bounce"
    assert services.is_suppressed(" ADA@example.org ") is True
    assert services.is_suppressed("bob@example.org") is False


def test_suppress_refuses_an_unknown_reason_or_a_bad_address():
    with pytest.raises(ValueError, match="Unknown suppression reason"):
        services.suppress("ada@example.org", reason="dislike")
    with pytest.raises(InvalidSubscriber):
        services.suppress("ada@example.org\nBcc: x@y.org", reason="manual")
    assert Suppression.objects.count() == 0


def test_unsuppress_lifts_the_suppression():
    services.suppress("ada@example.org", reason="manual")
    assert services.unsuppress("ADA@example.org") is True
    assert services.unsuppress("ada@example.org") is False
    assert services.is_suppressed("ada@example.org") is False


# --- tags and profile --------------------------------------------------------------------------------


def test_tag_creates_missing_tags_and_untag_removes_them():
    subscriber = SubscriberFactory()
    Tag.objects.create(name="vip")
    services.tag(subscriber, "vip", "beta", "vip")
    assert sorted(subscriber.tags.values_list("name", flat=True)) == ["beta", "vip"]
    assert Tag.objects.count() == 2
    services.untag(subscriber, "vip", "never-had-it")
    assert list(subscriber.tags.values_list("name", flat=True)) == ["beta"]


def test_tag_refuses_a_name_with_a_line_break():
    subscriber = SubscriberFactory()
    with pytest.raises(InvalidSubscriber) as caught:
        services.tag(subscriber, "ok", "bad\nname")
    assert caught.value.field == "tags"
    assert Tag.objects.count() == 0


def test_update_subscriber_changes_only_what_is_given():
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada", attributes={"plan": "pro"})
    services.update_subscriber(subscriber, name="Ada Lovelace", time_zone="Europe/London")
    row = _row(Subscriber, subscriber.pk)
    assert (row["email"], row["name"], row["time_zone"], row["attributes"]) == (
        "ada@example.org", "Ada Lovelace", "Europe/London", {"plan": "pro"})
    services.update_subscriber(subscriber, email="ADA@Lovelace.ORG", attributes={"city": "London"})
    row = _row(Subscriber, subscriber.pk)
    assert (row["email"], row["attributes"]) == ("ADA@lovelace.org", {"city": "London"})


def test_update_subscriber_refuses_an_address_someone_else_has():
    SubscriberFactory(email="bob@example.org")
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada")
    before = _row(Subscriber, subscriber.pk)
    with pytest.raises(InvalidSubscriber, match="Another subscriber already has this address."):
        services.update_subscriber(subscriber, email="BOB@example.org", name="Changed")
    assert _row(Subscriber, subscriber.pk) == before


def test_update_subscriber_refuses_bad_input_and_changes_nothing():
    subscriber = SubscriberFactory(email="ada@example.org", name="Ada")
    before = _row(Subscriber, subscriber.pk)
    with pytest.raises(InvalidSubscriber) as caught:
        services.update_subscriber(subscriber, name="New name", time_zone="Nowhere/Land")
    assert caught.value.field == "time_zone"
    assert _row(Subscriber, subscriber.pk) == before


def test_delete_subscriber_removes_them_and_their_subscriptions(double_list):
    subscription = SubscriptionFactory(mailing_list=double_list)
    services.delete_subscriber(subscription.subscriber)
    assert Subscriber.objects.count() == 0
    assert Subscription.objects.count() == 0
    assert MailingList.objects.filter(pk=double_list.pk).exists()


# --- GDPR ---------------------------------------------------------------------------------------


@pytest.fixture
def ada(double_list, single_list):
    subscriber = SubscriberFactory(email="Ada@Example.org", name="Ada", attributes={"city": "London"},
                                   time_zone="Europe/London")
    SubscriptionFactory(subscriber=subscriber, mailing_list=double_list, consent_ip="203.0.113.5",
                        consent_user_agent="Mozilla/5.0", consent_form="hosted signup page", consent_text="I agree.",
                        confirm_ip="203.0.113.6")
    SubscriptionFactory(subscriber=subscriber, mailing_list=single_list, status=Subscription.UNSUBSCRIBED,
                        unsubscribe_ip="203.0.113.7")
    services.tag(subscriber, "vip")
    return subscriber


def test_wipe_subscriber_erases_personal_data_but_keeps_the_row(ada):
    Suppression.objects.create(email="ada@example.org", reason=Suppression.COMPLAINT)

    services.wipe_subscriber(ada)

    row = _row(Subscriber, ada.pk)
    assert row["email"].startswith("erased-") and row["email"].endswith("@invalid")
    assert (row["name"], row["attributes"], row["time_zone"]) == ("", {}, "")
    assert ada.tags.count() == 0
    subscriptions = list(ada.subscriptions.values(
        "status", "consent_ip", "consent_user_agent", "confirm_ip", "unsubscribe_ip"))
    assert subscriptions == [
        {"status": "unsubscribed", "consent_ip": None, "consent_user_agent": "", "confirm_ip": None, "unsubscribe_ip": None},
    ] * 2
    assert Suppression.objects.count() == 0
    assert list(ErasedAddress.objects.values_list("digest", flat=True)) == [services.erased_digest("ada@example.org")]
    # Hex in the export's ids and erased address can spell "ada", so look for the values themselves.
    exported = json.dumps(services.export_subscriber(ada)).lower()
    for personal in ("ada@example.org", '"ada"', "london", "203.0.113.", "mozilla/5.0"):
        assert personal not in exported


@pytest.mark.parametrize("source", ["import", "api", "admin"])
def test_an_erased_address_cannot_be_added_back_without_fresh_consent(ada, single_list, source):
    services.wipe_subscriber(ada)
    with pytest.raises(InvalidSubscriber) as caught:
        services.subscribe(single_list, "ADA@example.org", source=source, confirmed=True)
    assert caught.value.field == "email"
    assert "erased at its owner's request" in str(caught.value)
    assert Subscriber.objects.count() == 1
    assert ErasedAddress.objects.count() == 1


def test_a_fresh_form_signup_brings_an_erased_address_back_once_confirmed(ada, double_list, single_list):
    services.wipe_subscriber(ada)
    # when: someone types the address into a signup form
    subscription = services.subscribe(double_list, "ada@example.org", source="form")
    # then: it is back, waiting, but imports stay refused until the owner confirms
    assert subscription.status == Subscription.UNCONFIRMED
    assert subscription.subscriber_id != ada.pk
    with pytest.raises(InvalidSubscriber):
        services.subscribe(single_list, "ada@example.org", source="import")
    services.confirm(subscription)
    assert ErasedAddress.objects.count() == 0
    assert services.subscribe(single_list, "ada@example.org", source="import").status == Subscription.CONFIRMED


def test_a_single_opt_in_form_signup_drops_the_erasure_marker_at_once(ada, single_list):
    services.wipe_subscriber(ada)
    services.subscribe(single_list, "ada@example.org", source="form")
    assert ErasedAddress.objects.count() == 0


def test_wipe_invalidates_preference_and_confirmation_links(ada):
    preferences = tokens.preferences_token(ada)
    confirmation = tokens.confirm_token(ada.subscriptions.first())
    services.wipe_subscriber(ada)
    with pytest.raises(tokens.TokenError):
        tokens.subscriber_from_preferences_token(preferences)
    with pytest.raises(tokens.TokenError):
        tokens.subscription_from_confirm_token(confirmation)


def test_wiping_twice_keeps_one_marker(ada):
    services.wipe_subscriber(ada)
    services.wipe_subscriber(ada)
    assert ErasedAddress.objects.count() == 1


def test_export_subscriber_holds_everything_and_is_json(ada, double_list):
    data = json.loads(json.dumps(services.export_subscriber(ada)))
    assert (data["email"], data["name"], data["attributes"], data["time_zone"], data["status"], data["tags"]) == (
        "Ada@Example.org", "Ada", {"city": "London"}, "Europe/London", "active", ["vip"])
    first = data["subscriptions"][0]
    assert first["list"] == "Weekly Letter"
    assert first["list_id"] == str(double_list.public_id)
    assert first["status"] == "confirmed"
    assert first["consent"] == {"at": None, "ip": "203.0.113.5", "user_agent": "Mozilla/5.0",
                                "form": "hosted signup page", "text": "I agree."}
    assert first["confirm_ip"] == "203.0.113.6"
    assert data["subscriptions"][1]["unsubscribe_ip"] == "203.0.113.7"
    assert data["suppression"] is None


def test_update_subscriber_refuses_an_erased_address(ada):
    services.wipe_subscriber(ada)
    other = SubscriberFactory(email="someone@example.org")
    with pytest.raises(InvalidSubscriber):
        services.update_subscriber(other, email="ada@example.org")
    assert _row(Subscriber, other.pk)["email"] == "someone@example.org"


def test_suppress_records_an_odd_but_plausible_address_from_a_bounce():
    suppression = services.suppress("Odd..Dots@Example", reason="hard_bounce")
    assert _row(Suppression, suppression.pk)["email"] == "odd..dots@example"
