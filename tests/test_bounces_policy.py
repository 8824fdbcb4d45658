"""The bounce policy (data, editable) and the signed return paths that name a message."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import composing, events, inbound, policy
from campaigns.models import BouncePolicy, Event
from lists.models import Subscription, Suppression
from tests.factories import MailingListFactory
from tests.tracking_fixtures import fresh_link_caches, sent_broadcast  # noqa: F401

pytestmark = pytest.mark.django_db


def soft(message, n):
    return policy.feedback(Event.SOFT_BOUNCE, message=message, uid=events.event_uid("test-soft", message.pk, n),
                           source="test", detail=f"552 5.2.2 mailbox full ({n})")


def suppression_reason(email):
    return Suppression.objects.filter(email=email).values_list("reason", flat=True).first()


# --- Hard bounces --------------------------------------------------------------------------------------


def test_a_hard_bounce_suppresses_at_once():
    message = sent_broadcast(1)[0]
    done = policy.feedback(Event.BOUNCE, message=message, uid=events.event_uid("t", 1), source="test",
                           detail="550 5.1.1 user unknown")
    assert done == [f"{message.email} suppressed (hard bounce)."]
    suppression = Suppression.objects.get(email=message.email)
    assert (suppression.reason, suppression.detail) == ("hard_bounce", "550 5.1.1 user unknown")


def test_with_hard_bounce_suppression_switched_off_the_address_stays_mailable():
    BouncePolicy.objects.create(pk=1, hard_bounce_suppresses=False)
    message = sent_broadcast(1)[0]
    assert policy.feedback(Event.BOUNCE, message=message, uid=events.event_uid("t", 2), source="test") == []
    assert Suppression.objects.count() == 0
    assert Event.objects.get().kind == "bounce"  # still recorded and counted


def test_the_same_report_twice_acts_once():
    message = sent_broadcast(1)[0]
    uid = events.event_uid("t", 3)
    first = policy.feedback(Event.BOUNCE, message=message, uid=uid, source="test")
    created = Suppression.objects.get().created_at
    second = policy.feedback(Event.BOUNCE, message=message, uid=uid, source="test")
    assert (len(first), second, Event.objects.count()) == (1, [], 1)
    assert Suppression.objects.get().created_at == created


# --- Soft bounces: N within M days --------------------------------------------------------------------


def test_soft_bounces_suppress_only_when_the_limit_is_reached_within_the_window():
    # given: the default policy, 3 soft bounces within 15 days
    messages = [sent_broadcast(1, prefix="same")[0]]
    newsletter = messages[0].broadcast.lists.get()
    for _ in range(2):  # two more broadcasts to the same subscriber
        messages.append(sent_broadcast(1, mailing_list=newsletter, prefix="same")[0])
    email = messages[0].email
    # when / then
    assert soft(messages[0], 1) == []
    assert soft(messages[1], 2) == []
    assert suppression_reason(email) is None
    assert soft(messages[2], 3) == [f"{email} suppressed (soft bounce)."]
    assert suppression_reason(email) == "soft_bounce"
    assert Suppression.objects.get(email=email).detail.startswith("3 soft bounces within 15 days")


def test_soft_bounces_older_than_the_window_do_not_count():
    BouncePolicy.objects.create(pk=1, soft_bounce_limit=2, soft_bounce_days=7)
    message = sent_broadcast(1)[0]
    soft(message, 1)
    Event.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert soft(message, 2) == []
    assert suppression_reason(message.email) is None
    assert len(soft(message, 3)) == 1
    assert suppression_reason(message.email) == "soft_bounce"


def test_a_zero_limit_never_suppresses_for_soft_bounces():
    BouncePolicy.objects.create(pk=1, soft_bounce_limit=0)
    message = sent_broadcast(1)[0]
    for n in range(5):
        soft(message, n)
    assert suppression_reason(message.email) is None


def test_deferrals_and_deliveries_change_nothing():
    message = sent_broadcast(1)[0]
    for kind in (Event.DEFERRED, Event.DELIVERED):
        assert policy.feedback(kind, message=message, uid=events.event_uid("t", kind), source="test") == []
    assert (Suppression.objects.count(), Subscription.objects.get().status) == (0, "confirmed")


# --- Complaints ------------------------------------------------------------------------------------------


def test_a_complaint_unsubscribes_from_every_list_and_suppresses():
    message = sent_broadcast(1)[0]
    other_list = MailingListFactory(name="Offers")
    Subscription.objects.create(subscriber=message.subscriber, mailing_list=other_list, status="confirmed")
    policy.feedback(Event.COMPLAINT, message=message, uid=events.event_uid("t", 4), source="test",
                    detail="Feedback-Type: abuse")
    assert set(Subscription.objects.values_list("status", flat=True)) == {"unsubscribed"}
    assert suppression_reason(message.email) == "complaint"


def test_a_complaint_with_unsubscribing_switched_off_only_suppresses():
    BouncePolicy.objects.create(pk=1, complaint_unsubscribes=False)
    message = sent_broadcast(1)[0]
    policy.feedback(Event.COMPLAINT, message=message, uid=events.event_uid("t", 5), source="test")
    assert Subscription.objects.get().status == "confirmed"
    assert suppression_reason(message.email) == "complaint"


def test_a_policy_needs_days_when_it_counts_soft_bounces():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        BouncePolicy(soft_bounce_limit=3, soft_bounce_days=0).full_clean()
    assert "soft_bounce_days" in caught.value.message_dict


# --- Signed return paths (VERP) and Message-IDs ----------------------------------------------------------


def test_the_return_path_names_its_message_whatever_the_case(settings):
    settings.BOUNCE_DOMAIN = "bounce.alice.example"
    address = inbound.return_path(123456)
    assert address.startswith("bounces+") and address.endswith("@bounce.alice.example")
    assert len(address.split("@")[0]) <= 64  # RFC 5321 local-part limit
    assert inbound.message_pk_from_address(inbound.BOUNCE, address) == 123456
    assert inbound.message_pk_from_address(inbound.BOUNCE, address.upper()) == 123456


def test_a_tampered_or_wrong_purpose_return_path_names_nothing(settings):
    settings.BOUNCE_DOMAIN = "bounce.alice.example"
    address = inbound.return_path(42)
    local, domain = address.split("@")
    flipped = local[:-1] + ("a" if local[-1] != "a" else "b")
    assert inbound.message_pk_from_address(inbound.BOUNCE, f"{flipped}@{domain}") is None
    assert inbound.message_pk_from_address(inbound.UNSUBSCRIBE_MAIL, address) is None
    assert inbound.message_pk_from_address(inbound.BOUNCE, "bounces@bounce.alice.example") is None


def test_without_a_bounce_domain_there_is_no_return_path(settings):
    settings.BOUNCE_DOMAIN = ""
    assert inbound.return_path(1) == ""


def test_our_message_id_names_its_message():
    assert inbound.message_pk_from_message_id(composing.message_id_for(987)) == 987
    assert inbound.message_pk_from_message_id("<someone-else@example.org>") is None


def test_the_mailto_address_is_sub_addressed_only_when_the_mailbox_is_read(settings):
    settings.UNSUBSCRIBE_MAILTO = "leave@alice.example"
    settings.BOUNCE_MAILBOX_URL = ""
    assert inbound.unsubscribe_mailto(7) == "leave@alice.example"
    settings.BOUNCE_MAILBOX_URL = "imaps://u:p@mail.alice.example/INBOX"
    address = inbound.unsubscribe_mailto(7)
    assert address.startswith("leave+") and address.endswith("@alice.example")
    assert inbound.message_pk_from_address(inbound.UNSUBSCRIBE_MAIL, address) == 7
