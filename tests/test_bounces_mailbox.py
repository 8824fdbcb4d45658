"""The bounce mailbox, read over IMAP and POP3 from a real Dovecot on loopback."""

import pytest

from campaigns import composing, events, inbound
from campaigns.models import Event
from lists.models import Subscription, Suppression
from tests.dovecot import dovecot, dovecot_server  # noqa: F401
from tests.test_bounces import sample
from tests.tracking_fixtures import fresh_link_caches, sent_broadcast  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


@pytest.fixture(autouse=True)
def bounce_settings(settings):
    settings.BOUNCE_DOMAIN = "bounce.alice.example"
    settings.BOUNCE_MAILBOX_URL = "imap://configured-per-test"


@pytest.fixture
def message():
    return sent_broadcast(2)[0]


def returned(name, message, **values):
    return sample(name, verp=inbound.return_path(message.pk), recipient=message.email,
                  message_id=composing.message_id_for(message.pk), **values)


def kinds(message):
    return sorted(Event.objects.filter(message=message).values_list("kind", flat=True))


def reason(message):
    return Suppression.objects.filter(email=message.email).values_list("reason", flat=True).first()


def test_dsn_over_imap_bounces_the_message_and_is_deleted(message, dovecot):
    # given
    dovecot.deliver(returned("postfix_user_unknown", message))
    # when
    result = inbound.read_mailbox(dovecot.url("imap"))
    # then
    assert (result.read, result.understood, result.kept) == (1, 1, 0)
    assert kinds(message) == ["bounce"]
    event = Event.objects.get(message=message)
    assert (event.source, event.detail[:9]) == ("mailbox", "5.1.1 550")
    assert reason(message) == "hard_bounce"
    assert result.actions == [f"{message.email} suppressed (hard bounce)."]
    assert dovecot.contents() == []


def test_arf_complaint_over_imap_unsubscribes_and_suppresses(message, dovecot):
    dovecot.deliver(returned("arf_abuse", message, fbl_address="fbl@bounce.alice.example"))
    inbound.read_mailbox(dovecot.url("imap"))
    assert kinds(message) == ["complaint"]
    assert Subscription.objects.get(subscriber=message.subscriber).status == "unsubscribed"
    assert reason(message) == "complaint"
    assert dovecot.contents() == []


def test_a_report_quoting_only_our_message_id_is_mapped_by_it(message, dovecot):
    raw = returned("gmail_mailbox_full", message).replace(
        inbound.return_path(message.pk).encode(), b"postmaster@alice.example")
    dovecot.deliver(raw)
    inbound.read_mailbox(dovecot.url("imap"))
    assert kinds(message) == ["soft_bounce"]
    assert reason(message) is None  # one soft bounce is not enough


def test_a_forged_bounce_without_a_valid_token_changes_nothing_and_stays(message, dovecot):
    # given: a DSN to a made-up return path, quoting a made-up Message-ID
    forged = sample("postfix_user_unknown", verp="bounces+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@bounce.alice.example",
                    recipient=message.email, message_id="<forged-1234567890@alice.example>")
    dovecot.deliver(forged)
    # when
    result = inbound.read_mailbox(dovecot.url("imap"))
    # then
    assert (result.understood, result.kept) == (0, 1)
    assert (Event.objects.count(), reason(message)) == (0, None)
    [(flags, _)] = dovecot.contents()
    assert "\\Seen" in flags


def test_mail_that_is_not_a_bounce_is_left_for_a_person_and_not_read_again(message, dovecot):
    dovecot.deliver(returned("out_of_office", message))
    first = inbound.read_mailbox(dovecot.url("imap"))
    second = inbound.read_mailbox(dovecot.url("imap"))
    assert (first.kept, second.read) == (1, 0)
    assert len(dovecot.contents()) == 1
    assert Event.objects.count() == 0


def test_the_same_bounce_delivered_twice_counts_once(message, dovecot):
    raw = returned("postfix_user_unknown", message)
    dovecot.deliver(raw)
    dovecot.deliver(raw)
    result = inbound.read_mailbox(dovecot.url("imap"))
    assert (result.read, result.understood) == (2, 2)
    assert kinds(message) == ["bounce"]


def test_handled_mail_can_be_moved_to_a_folder_instead_of_deleted(message, dovecot):
    dovecot.deliver(b"Subject: placeholder\r\n\r\ncreates the folder\r\n", folder="Processed")
    dovecot.deliver(returned("exim_delayed", message))
    inbound.read_mailbox(dovecot.url("imap", query="processed=Processed"))
    assert kinds(message) == ["deferred"]
    assert dovecot.contents("INBOX") == []
    assert len(dovecot.contents("Processed")) == 2


def test_dsn_over_pop3_is_handled_and_deleted_and_other_mail_kept(message, dovecot):
    dovecot.deliver(returned("qmail_failure_notice", message))
    dovecot.deliver(returned("out_of_office", message))
    first = inbound.read_mailbox(dovecot.url("pop3"))
    second = inbound.read_mailbox(dovecot.url("pop3"))
    assert (first.read, first.understood, first.kept) == (2, 1, 1)
    assert second.read == 0  # the kept one is remembered
    assert kinds(message) == ["bounce"]
    assert len(dovecot.contents()) == 1


def test_mailto_unsubscribe_names_its_message_by_the_sub_address(message, dovecot, settings):
    # given: the mailto address a message carries, written to by the recipient's mail app
    address = inbound.unsubscribe_mailto(message.pk)
    assert address.startswith("unsubscribe+") and address.endswith("@bounce.alice.example")
    dovecot.deliver(
        f"From: {message.email}\r\nTo: {address}\r\nSubject: unsubscribe\r\n"
        f"Message-ID: <mailto-unsub-1@example.org>\r\n\r\n".encode()
    )
    # when
    result = inbound.read_mailbox(dovecot.url("imap"))
    # then
    assert result.understood == 1
    assert Subscription.objects.get(subscriber=message.subscriber).status == "unsubscribed"
    assert kinds(message) == ["unsubscribe"]
    assert dovecot.contents() == []
    assert events.pending() == 0


def test_read_bounces_command_says_what_it_did(message, dovecot):
    from io import StringIO

    from django.core.management import call_command

    dovecot.deliver(returned("postfix_user_unknown", message))
    dovecot.deliver(returned("out_of_office", message))
    out = StringIO()
    call_command("read_bounces", "--url", dovecot.url("imap"), stdout=out)
    assert out.getvalue().splitlines() == [
        f"  {message.email} suppressed (hard bounce).",
        "Read 2 mail(s): 1 handled and removed, 1 left in the mailbox for a person to read.",
    ]


def test_read_bounces_command_without_a_mailbox_says_how_to_set_one(settings):
    from django.core.management import CommandError, call_command

    settings.BOUNCE_MAILBOX_URL = ""
    with pytest.raises(CommandError, match="set BOUNCE_MAILBOX_URL"):
        call_command("read_bounces")
