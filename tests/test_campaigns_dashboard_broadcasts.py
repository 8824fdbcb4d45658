"""Dashboard: the broadcast composer, recipients and cost, send once, schedule, progress, pause/resume/cancel, report."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Broadcast, Message, Template
from lists.models import Subscription, Suppression
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, audience, backend_for

pytestmark = pytest.mark.django_db

INDEX = reverse("campaigns:broadcast_index")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def newsletter():
    """Three confirmed readers, plus one who unsubscribed and one suppressed: three recipients."""
    mailing_list = MailingListFactory(name="Newsletter")
    audience(mailing_list, 3)
    SubscriptionFactory(mailing_list=mailing_list, subscriber__email="left@example.org",
                        status=Subscription.UNSUBSCRIBED)
    suppressed = SubscriptionFactory(mailing_list=mailing_list, subscriber__email="gone@example.org")
    Suppression.objects.create(email=suppressed.subscriber.email, reason=Suppression.HARD_BOUNCE)
    return mailing_list


@pytest.fixture
def sender():
    return SenderFactory(name="Shop", from_name="Alice's Shop", from_email="news@alice.example")


@pytest.fixture
def relay(smtp_server):
    return backend_for(smtp_server, name="Relay", price_per_thousand=Decimal("2000"))


@pytest.fixture
def draft(newsletter, sender):
    return BroadcastFactory(name="Spring sale", sender=sender, lists=[newsletter])


def compose_post(sender, newsletter, **overrides):
    data = {
        "name": "Spring sale", "sender": str(sender.pk), "subject": "Spring sale for {{ subscriber.first_name }}",
        "body_format": "html", "body": BODY, "text_body": "", "layout": "", "lists": [str(newsletter.pk)],
        "segment": "", "backend": "", "track_opens": "on", "track_clicks": "on",
    }
    data.update(overrides)
    return data


def iframe_src(html):
    tag = re.search(r"<iframe[^>]*>", html).group()
    assert re.search(r"\ssandbox(\s|>)", tag) and "allow-" not in tag
    return re.search(r'src="([^"]+)"', tag).group(1)


def set_status(broadcast, status, **fields):
    Broadcast.objects.filter(pk=broadcast.pk).update(status=status, **fields)
    broadcast.refresh_from_db()


# --- Role matrix ------------------------------------------------------------------------------


def test_mallory_is_refused_broadcasts(mallory_client, draft):
    for url in (INDEX, reverse("campaigns:broadcast_detail", args=[draft.pk]),
                reverse("campaigns:broadcast_progress", args=[draft.pk])):
        assert mallory_client.get(url).status_code == 403


def test_victor_reads_but_cannot_compose_or_send(victor_client, draft, sender, newsletter, relay, smtp_server):
    assert victor_client.get(INDEX).status_code == 200
    detail = victor_client.get(reverse("campaigns:broadcast_detail", args=[draft.pk]))
    assert detail.status_code == 200 and "Review and send" not in detail.text

    assert victor_client.get(reverse("campaigns:broadcast_create")).status_code == 403
    assert victor_client.post(reverse("campaigns:broadcast_create"), compose_post(sender, newsletter)).status_code == 403
    assert victor_client.post(reverse("campaigns:broadcast_edit", args=[draft.pk]),
                              compose_post(sender, newsletter, subject="Changed")).status_code == 403
    for name in ("broadcast_send", "broadcast_pause", "broadcast_resume", "broadcast_cancel", "broadcast_delete",
                 "broadcast_test", "broadcast_unschedule"):
        assert victor_client.post(reverse(f"campaigns:{name}", args=[draft.pk]), {"email": "v@example.org"}).status_code == 403
    assert victor_client.post(reverse("campaigns:compose_test"), compose_post(sender, newsletter)).status_code == 403

    draft.refresh_from_db()
    assert (draft.status, draft.subject) == ("draft", "Spring sale for {{ subscriber.first_name | default: 'you' }}")
    assert Broadcast.objects.count() == 1 and not Message.objects.exists()
    assert smtp_server.messages == []


def test_victor_cannot_pause_a_sending_broadcast(victor_client, draft):
    set_status(draft, Broadcast.SENDING)
    assert victor_client.post(reverse("campaigns:broadcast_pause", args=[draft.pk])).status_code == 403
    draft.refresh_from_db()
    assert draft.status == "sending"


# --- Composer -------------------------------------------------------------------------------------


def test_bob_composes_a_draft(bob_client, bob, sender, newsletter):
    response = bob_client.post(reverse("campaigns:broadcast_create"), compose_post(sender, newsletter))
    broadcast = Broadcast.objects.get()
    assert response["Location"] == reverse("campaigns:broadcast_detail", args=[broadcast.pk])
    assert (broadcast.status, broadcast.sender, broadcast.created_by) == ("draft", sender, bob)
    assert list(broadcast.lists.all()) == [newsletter]
    assert (broadcast.track_opens, broadcast.track_clicks) == (True, True)


def test_a_broadcast_needs_a_list_or_a_segment(bob_client, sender, newsletter):
    response = bob_client.post(reverse("campaigns:broadcast_create"), compose_post(sender, newsletter, lists=[]))
    assert "Choose at least one list or a segment." in response.text
    assert not Broadcast.objects.exists()


def test_a_broadcast_with_a_liquid_error_is_refused_with_its_line(bob_client, sender, newsletter):
    response = bob_client.post(reverse("campaigns:broadcast_create"),
                               compose_post(sender, newsletter, body="<p>Hi</p>\n{% for %}"))
    assert "Line 2: missing expression" in response.text
    assert not Broadcast.objects.exists()


def test_the_composer_starts_from_a_saved_template(bob_client, sender):
    template = Template.objects.create(name="Monthly", subject="Our month, {{ subscriber.first_name }}", body=BODY)
    response = bob_client.get(reverse("campaigns:broadcast_create"), {"template": template.pk})
    form = response.context["form"]
    assert form["subject"].value() == "Our month, {{ subscriber.first_name }}"
    assert form["name"].value() == "Monthly"
    assert "Content copied from “Monthly”" in response.text


def test_the_composer_asks_for_a_sender_when_there_is_none(bob_client):
    assert "A broadcast needs a sender identity" in bob_client.get(reverse("campaigns:broadcast_create")).text


def test_composer_live_preview_renders_unsaved_fields(bob_client, sender, newsletter):
    response = bob_client.post(reverse("campaigns:compose_preview"),
                               compose_post(sender, newsletter, subject="Hi {{ subscriber.first_name }}!"),
                               HTTP_HX_REQUEST="true")
    assert "Hi Sam!" in response.text
    page = bob_client.get(iframe_src(response.text))
    assert page["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Hello Sam," in page.text and "1 Market Street, Springfield" in page.text
    assert "shop.example/spring" in page.text  # links are not rewritten in previews


def test_composer_counts_recipients_and_cost(bob_client, sender, newsletter, relay):
    response = bob_client.post(reverse("campaigns:compose_count"), compose_post(sender, newsletter))
    assert response.context["recipients"] == 3
    assert response.context["cost"] == Decimal("6.00")
    assert "<strong>3</strong> recipients now" in response.text
    assert "about <strong>6.00</strong> at 2000 per 1,000 through Relay" in response.text


def test_composer_count_asks_for_a_target_first(bob_client, sender, newsletter):
    response = bob_client.post(reverse("campaigns:compose_count"), compose_post(sender, newsletter, lists=[]))
    assert "Choose at least one list or a segment" in response.text


def test_composer_test_send_reaches_the_smtp_server(bob_client, sender, newsletter, relay, smtp_server):
    response = bob_client.post(reverse("campaigns:compose_test"),
                               {**compose_post(sender, newsletter), "email": "proof@alice.example"},
                               HTTP_HX_REQUEST="true")
    assert "Sent to proof@alice.example through Relay." in response.text
    assert [m.rcpt_tos for m in smtp_server.messages] == [["proof@alice.example"]]
    assert smtp_server.messages[0].message["Subject"] == "[Test] Spring sale for"
    assert not Message.objects.exists()  # a test is not in the ledger


def test_bob_edits_a_draft(bob_client, draft, sender, newsletter):
    other = MailingListFactory(name="Customers")
    bob_client.post(reverse("campaigns:broadcast_edit", args=[draft.pk]),
                    compose_post(sender, newsletter, subject="New subject", lists=[str(other.pk)]))
    draft.refresh_from_db()
    assert draft.subject == "New subject"
    assert list(draft.lists.all()) == [other]


def test_only_drafts_can_be_edited(bob_client, draft, sender, newsletter):
    set_status(draft, Broadcast.SENDING)
    response = bob_client.post(reverse("campaigns:broadcast_edit", args=[draft.pk]),
                               compose_post(sender, newsletter, subject="Too late"), follow=True)
    assert "can no longer be edited" in response.text
    draft.refresh_from_db()
    assert draft.subject != "Too late"


def test_bob_deletes_a_draft_but_not_a_sent_broadcast(bob_client, draft, newsletter, sender):
    sent = BroadcastFactory(sender=sender, lists=[newsletter], status=Broadcast.SENT)
    bob_client.post(reverse("campaigns:broadcast_delete", args=[sent.pk]))
    bob_client.post(reverse("campaigns:broadcast_delete", args=[draft.pk]))
    assert list(Broadcast.objects.values_list("pk", flat=True)) == [sent.pk]


# --- Sending --------------------------------------------------------------------------------------


def test_the_send_step_shows_recipients_and_cost(bob_client, draft, relay):
    response = bob_client.get(reverse("campaigns:broadcast_send", args=[draft.pk]))
    assert response.context["problems"] == []
    assert 'data-confirm="Send “Spring sale” to every recipient counted above now? This cannot be undone."' \
        in response.text

    # the count loads after the page (campaigns:broadcast_count), and names the number on the button
    count = bob_client.get(reverse("campaigns:broadcast_count", args=[draft.pk]), HTTP_HX_REQUEST="true")
    assert (count.context["recipients"], count.context["cost"]) == (3, Decimal("6.00"))
    assert '<span id="send-count" hx-swap-oob="true"> to 3 subscribers</span>' in count.text


def test_the_send_step_lists_problems_and_disables_sending(bob_client, newsletter, relay):
    broadcast = BroadcastFactory(sender=SenderFactory(postal_address=""), lists=[newsletter])
    response = bob_client.get(reverse("campaigns:broadcast_send", args=[broadcast.pk]))
    assert "The sender has no postal address; add one to the sender identity." in response.text
    assert re.search(r'<button type="submit" class="primary" disabled', response.text)


def test_sending_through_the_view_twice_sends_once(bob_client, draft, relay, smtp_server,
                                                   django_capture_on_commit_callbacks):
    url = reverse("campaigns:broadcast_send", args=[draft.pk])
    with django_capture_on_commit_callbacks(execute=True):
        first = bob_client.post(url)
        second = bob_client.post(url, follow=True)

    assert first["Location"] == reverse("campaigns:broadcast_detail", args=[draft.pk])
    assert "This broadcast was already started; it is sent once." in second.text
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader2@example.org"]
    draft.refresh_from_db()
    assert (draft.status, draft.recipients_count, draft.sent_count) == ("sent", 3, 3)
    assert Message.objects.filter(broadcast=draft).count() == 3


def test_a_finished_send_shows_full_progress_and_the_report(bob_client, draft, relay, smtp_server,
                                                            django_capture_on_commit_callbacks):
    smtp_server.rcpt_replies["reader1@example.org"] = "550 5.1.1 <reader1@example.org>: no such user"
    with django_capture_on_commit_callbacks(execute=True):
        bob_client.post(reverse("campaigns:broadcast_send", args=[draft.pk]))

    response = bob_client.get(reverse("campaigns:broadcast_detail", args=[draft.pk]))
    progress = response.context["progress"]
    assert (progress["percent"], progress["sent"], progress["failed"]) == (100, 2, 1)
    assert response.context["bounced"] == 1
    assert response.context["poll"] is None  # finished: the partial stops polling
    assert "hx-trigger=\"every" not in response.text
    assert 'value="100"' in response.text


def test_progress_partial_polls_while_sending_from_the_counters(victor_client, draft):
    set_status(draft, Broadcast.SENDING, recipients_count=10, sent_count=4, failed_count=1,
               fanned_out_at=timezone.now())
    response = victor_client.get(reverse("campaigns:broadcast_progress", args=[draft.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert 'hx-trigger="every 2s"' in response.text
    assert '<progress id="progress-bar" max="100" value="50"' in response.text
    assert "5 of 10 done · 4 sent · 1 failed · 0 unknown · 0 skipped" in response.text
    assert "Pause" not in response.text  # victor cannot act


def test_progress_partial_shows_the_engines_pause_reason(bob_client, draft):
    reason = "Paused after 5 messages in a row were refused as policy violations (5.7.x) by Relay"
    set_status(draft, Broadcast.PAUSED, pause_reason=reason, recipients_count=10)
    response = bob_client.get(reverse("campaigns:broadcast_progress", args=[draft.pk]))
    assert reason in response.text
    assert "Resume" in response.text and "hx-trigger" not in response.text


def test_pause_resume_and_cancel(bob_client, draft, django_capture_on_commit_callbacks):
    set_status(draft, Broadcast.SENDING, recipients_count=3, fanned_out_at=timezone.now())

    response = bob_client.post(reverse("campaigns:broadcast_pause", args=[draft.pk]), follow=True)
    draft.refresh_from_db()
    assert draft.status == "paused"
    assert "Paused. Messages in flight finish" in response.text

    with django_capture_on_commit_callbacks() as bells:
        bob_client.post(reverse("campaigns:broadcast_resume", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == "sending" and len(bells) == 1

    bob_client.post(reverse("campaigns:broadcast_cancel", args=[draft.pk]))
    draft.refresh_from_db()
    assert draft.status == "cancelled"

    again = bob_client.post(reverse("campaigns:broadcast_resume", args=[draft.pk]), follow=True)
    assert "It was not paused." in again.text


def test_pause_and_cancel_need_post(bob_client, draft):
    set_status(draft, Broadcast.SENDING)
    assert bob_client.get(reverse("campaigns:broadcast_pause", args=[draft.pk])).status_code == 405
    assert bob_client.get(reverse("campaigns:broadcast_cancel", args=[draft.pk])).status_code == 405
    draft.refresh_from_db()
    assert draft.status == "sending"


def test_schedule_then_unschedule(bob_client, draft, relay):
    when = timezone.localtime() + timedelta(days=1)
    response = bob_client.post(reverse("campaigns:broadcast_schedule", args=[draft.pk]),
                               {"scheduled_at": when.strftime("%Y-%m-%dT%H:%M"), "in_subscriber_time_zone": "on"})
    assert response["Location"] == reverse("campaigns:broadcast_detail", args=[draft.pk])
    draft.refresh_from_db()
    assert draft.status == "scheduled" and draft.in_subscriber_time_zone is True
    assert draft.scheduled_at == when.replace(second=0, microsecond=0)

    bob_client.post(reverse("campaigns:broadcast_unschedule", args=[draft.pk]))
    draft.refresh_from_db()
    assert (draft.status, draft.scheduled_at) == ("draft", None)


def test_a_past_time_is_refused(bob_client, draft, relay):
    when = timezone.localtime() - timedelta(hours=2)
    response = bob_client.post(reverse("campaigns:broadcast_schedule", args=[draft.pk]),
                               {"scheduled_at": when.strftime("%Y-%m-%dT%H:%M")})
    assert response.status_code == 400
    assert "This time is in the past. Pick a later time, or send now." in response.text
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_test_send_from_the_broadcast_page(bob_client, draft, relay, smtp_server):
    SubscriberFactory(email="ada@example.org", name="Ada Lovelace")
    response = bob_client.post(reverse("campaigns:broadcast_test", args=[draft.pk]),
                               {"email": "proof@alice.example", "preview_email": "ada@example.org"},
                               HTTP_HX_REQUEST="true")
    assert "Sent to proof@alice.example through Relay." in response.text
    assert smtp_server.messages[0].message["Subject"] == "[Test] Spring sale for Ada"


def test_the_broadcast_page_previews_for_a_chosen_subscriber(victor_client, draft):
    SubscriberFactory(email="ada@example.org", name="Ada Lovelace")
    partial = victor_client.get(reverse("campaigns:broadcast_preview", args=[draft.pk]),
                                {"preview_email": "ada@example.org"})
    assert "Spring sale for Ada" in partial.text
    assert "Hello Ada," in victor_client.get(iframe_src(partial.text)).text


def test_the_index_lists_broadcasts_with_status_and_progress(victor_client, draft):
    BroadcastFactory(name="Winter", sender=draft.sender, status=Broadcast.SENDING, recipients_count=4, sent_count=1)
    response = victor_client.get(INDEX)
    assert "Spring sale" in response.text and "Winter" in response.text
    assert 'aria-label="Progress of Winter">25%' in response.text


def test_a_new_broadcast_starts_with_a_body_that_can_be_sent(bob_client, sender, newsletter):
    from campaigns.forms import STARTER_BODY

    form = bob_client.get(reverse("campaigns:broadcast_create")).context["form"]
    assert form["body"].value() == STARTER_BODY
    response = bob_client.post(reverse("campaigns:compose_preview"), compose_post(sender, newsletter, body=STARTER_BODY))
    assert "This would not be sent" not in response.text
    assert "Hello Sam," in bob_client.get(iframe_src(response.text)).text


def test_an_empty_body_asks_for_content_instead_of_listing_problems(bob_client, sender, newsletter):
    response = bob_client.post(reverse("campaigns:compose_preview"), compose_post(sender, newsletter, body="  "))
    assert "Write the body and the preview appears here." in response.text
    assert "<iframe" not in response.text


def test_composer_counts_a_segment_within_the_lists(bob_client, sender, newsletter, relay):
    from lists.models import Segment

    segment = Segment.objects.create(name="Reader 1", conditions=[{"field": "email", "op": "starts_with", "value": "reader1"}])
    response = bob_client.post(reverse("campaigns:compose_count"),
                               compose_post(sender, newsletter, segment=str(segment.pk)))
    assert response.context["recipients"] == 1
    assert response.context["cost"] == Decimal("2.00")
