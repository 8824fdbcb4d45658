"""Bounces on the SMTP path: the server's reply becomes an event under the bounce policy; every
message leaves with its own signed return path."""

import pytest
from django.utils import timezone

from campaigns import inbound, ledger, sending, stats
from campaigns.models import Broadcast, Event, Message
from lists.models import Suppression
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for
from tests.tracking_fixtures import fresh_link_caches  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def broadcast():
    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, 3)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    ledger.fan_out(broadcast, send_at=timezone.now())
    broadcast.refresh_from_db()
    return broadcast


def events_of(broadcast):
    return sorted(Event.objects.filter(message__broadcast=broadcast).values_list("message__email", "kind", "source"))


def test_a_5_1_1_reply_is_a_hard_bounce_event_and_suppresses(smtp_server, broadcast):
    # given
    backend_for(smtp_server)
    smtp_server.rcpt_replies["reader1@example.org"] = "550 5.1.1 <reader1@example.org>: no such user"
    # when
    sending.send_batch(broadcast.pk)
    # then
    assert events_of(broadcast) == [("reader1@example.org", "bounce", "smtp")]
    assert Suppression.objects.get(email="reader1@example.org").reason == "hard_bounce"
    figures = stats.broadcast_stats(Broadcast.objects.get(pk=broadcast.pk))
    assert (figures["sent"], figures["bounced"], figures["failed"]) == (2, 1, 1)
    assert [row["sent"] for row in stats.timeseries("broadcast", broadcast.pk)] == [2]


def test_a_temporary_refusal_is_a_deferral_and_suppresses_nothing(smtp_server, broadcast):
    backend_for(smtp_server)
    smtp_server.set_data_reply("451 4.3.0 Try again later")
    sending.send_batch(broadcast.pk)
    assert [kind for _, kind, _ in events_of(broadcast)] == ["deferred"] * 3
    assert Suppression.objects.count() == 0
    assert stats.broadcast_stats(Broadcast.objects.get(pk=broadcast.pk))["deferred"] == 3


def test_a_mailbox_full_refusal_is_a_soft_bounce(smtp_server, broadcast):
    backend_for(smtp_server)
    smtp_server.rcpt_replies["reader0@example.org"] = "552 5.2.2 Mailbox full"
    sending.send_batch(broadcast.pk)
    assert events_of(broadcast) == [("reader0@example.org", "soft_bounce", "smtp")]
    assert Suppression.objects.count() == 0  # one soft bounce is below the policy's limit


def test_hard_bounce_suppression_follows_the_policy(smtp_server, broadcast):
    from campaigns.models import BouncePolicy

    BouncePolicy.objects.create(pk=1, hard_bounce_suppresses=False)
    backend_for(smtp_server)
    smtp_server.rcpt_replies["reader1@example.org"] = "550 5.1.1 no such user"
    sending.send_batch(broadcast.pk)
    assert Suppression.objects.count() == 0
    assert [kind for _, kind, _ in events_of(broadcast)] == ["bounce"]


def test_each_message_leaves_with_its_own_signed_return_path(smtp_server, broadcast, settings):
    # given
    settings.BOUNCE_DOMAIN = "bounce.alice.example"
    backend_for(smtp_server)
    # when
    sending.send_batch(broadcast.pk)
    # then: the envelope sender names the message; the From header is the sender's
    by_recipient = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    for message in Message.objects.filter(broadcast=broadcast):
        received = by_recipient[message.email]
        assert received.mail_from.startswith("bounces+") and received.mail_from.endswith("@bounce.alice.example")
        assert inbound.message_pk_from_address(inbound.BOUNCE, received.mail_from) == message.pk
        assert received.message["From"] == "Alice's Shop <news@alice.example>"


def test_without_a_bounce_domain_the_envelope_sender_is_the_from_address(smtp_server, broadcast, settings):
    settings.BOUNCE_DOMAIN = ""
    backend_for(smtp_server)
    sending.send_batch(broadcast.pk)
    assert {m.mail_from for m in smtp_server.messages} == {"news@alice.example"}


def test_list_unsubscribe_mailto_is_per_message_when_the_mailbox_is_read(smtp_server, broadcast, settings):
    settings.UNSUBSCRIBE_MAILTO = "leave@alice.example"
    settings.BOUNCE_MAILBOX_URL = "imaps://u:p@mail.alice.example/INBOX"
    backend_for(smtp_server)
    sending.send_batch(broadcast.pk)
    for received in smtp_server.messages:
        header = str(received.message["List-Unsubscribe"])
        mailto = header.split("<mailto:")[1].split("?")[0]
        message = Message.objects.get(email=received.rcpt_tos[0], broadcast=broadcast)
        assert inbound.message_pk_from_address(inbound.UNSUBSCRIBE_MAIL, mailto) == message.pk
        assert received.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
