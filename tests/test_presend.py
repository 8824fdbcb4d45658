"""The pre-send check (campaigns.presend): every check's outcomes on real rendered messages, the
registry, the composer, step editor and send step, and the refusal to start or schedule on an error."""

import dataclasses
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from campaigns import broadcasts, mime, presend
from campaigns.models import Backend, Broadcast
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, audience, backend_for
from tests.sequence_helpers import build

pytestmark = pytest.mark.django_db

FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p>'
WORDS = " ".join(["Spring is here and the shop has new seeds, tools and plants for every garden."] * 4)


@pytest.fixture(autouse=True)
def _public_site(settings):
    """An https SITE_URL, as in production (the tests' own http://testserver is checked apart)."""
    settings.SITE_URL, settings.SITE_HOST = "https://mail.example.com", "mail.example.com"


@pytest.fixture(autouse=True)
def _message_checks_only():
    """These tests are about the message; the From-domain check (campaigns.domain_checks, registered
    at start-up) reads the sending domains and is tested in tests/test_domains.py."""
    name = "campaigns.domain_checks.from_domain_authenticated"
    saved = presend._CHECKS.pop(name, None)
    yield
    if saved:
        presend._CHECKS[name] = saved


@pytest.fixture
def newsletter():
    from tests.factories import MailingListFactory

    mailing_list = MailingListFactory(name="Newsletter")
    audience(mailing_list, 2)
    return mailing_list


@pytest.fixture
def relay(smtp_server):
    return backend_for(smtp_server, name="Relay", price_per_thousand=Decimal("2.5"))


def draft(newsletter, body=BODY, **fields):
    return BroadcastFactory(name="Spring sale", lists=[newsletter], body=body, **fields)


def outcome(results):
    return [(r.level, r.title) for r in results]


def found(results, title):
    return [(r.level, r.detail) for r in results if r.title == title]


# --- A message that passes -------------------------------------------------------------------------


def test_it_passes_a_compliant_broadcast_on_every_check(newsletter, relay):
    results = presend.run(draft(newsletter))

    assert outcome(results) == [
        ("ok", "Unsubscribe link and postal address"),
        ("ok", "One-click unsubscribe headers"),
        ("ok", "Plain-text part"),
        ("ok", "Size (Gmail clips at 102 KB)"),
        ("ok", "No links to a development address"),
        ("ok", "Images and text"),
    ]
    assert [r.detail for r in results] == [
        "Both parts have a visible unsubscribe link and the sender's postal address.",
        "List-Unsubscribe (an https address) and List-Unsubscribe-Post are set.",
        "A plain-text part of 18 words goes with the HTML.",
        "The HTML is 0.5 KB, under Gmail's 102 KB clipping limit.",
        "No link or image points to localhost or another development address.",
        "16 words and 0 images.",
    ]
    assert broadcasts.problems(draft(newsletter)) == []


def test_it_checks_the_message_of_the_first_subscriber_tracked_as_it_is_sent(newsletter, relay):
    sample = presend.build_sample(draft(newsletter))

    assert sample.subscriber.email in ("reader0@example.org", "reader1@example.org")
    assert sample.links == (f"https://shop.example/spring?id={sample.subscriber.email}", "https://shop.example/blog")
    assert "https://mail.example.com/c/" in sample.html and "https://shop.example/blog" not in sample.html
    assert sample.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sample.backend == relay
    assert Broadcast.objects.get().messages.count() == 0  # nothing written: no ledger row, no link


# --- Each check's outcomes ---------------------------------------------------------------------------


def test_it_reports_a_missing_unsubscribe_link_and_postal_address_as_an_error(newsletter, relay):
    results = presend.run(draft(newsletter, body="<p>Hello {{ subscriber.name }}</p>"))

    assert found(results, "Unsubscribe link and postal address") == [("error", (
        "The message has no visible unsubscribe link. Add {{ unsubscribe_url }} as a link. "
        "The plain-text part has no unsubscribe link. The sender's postal address is missing. "
        "Add {{ sender.postal_address }} to the footer. The plain-text part is missing the sender's postal address."
    ))]


def test_a_message_that_cannot_be_built_is_one_error(newsletter, relay):
    sender = SenderFactory(from_name="Shop\r\nBcc: everyone@example.org")

    results = presend.run(draft(newsletter, sender=sender))

    assert [(r.level, r.title, r.detail) for r in results] == [(
        "error", "The message renders",
        "The sender's From name contains a line break; fix the sender identity, then resume.",
    )]


def test_one_click_unsubscribe_over_http_is_a_warning(newsletter, relay, settings):
    settings.SITE_URL, settings.SITE_HOST = "http://mail.example.com", "mail.example.com"

    results = presend.run(draft(newsletter))

    assert found(results, "One-click unsubscribe headers") == [("warning", (
        "List-Unsubscribe points to http://mail.example.com, which is not https; Gmail and Yahoo offer "
        "one-click unsubscribe for https addresses only. Set SITE_URL to this app's https address."
    ))]
    assert broadcasts.problems(draft(newsletter)) == []


def test_one_click_unsubscribe_mentions_the_mailto_address(newsletter, relay, settings):
    settings.UNSUBSCRIBE_MAILTO = "unsubscribe@alice.example"

    results = presend.run(draft(newsletter))

    assert found(results, "One-click unsubscribe headers") == [
        ("ok", "List-Unsubscribe (an https address and a mailto address) and List-Unsubscribe-Post are set.")]


def test_a_message_without_the_one_click_headers_is_an_error(newsletter, relay):
    sample = presend.build_sample(draft(newsletter))
    head, _, body = sample.raw.partition(b"MIME-Version:")
    stripped = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"List-Unsubscribe"))

    result = presend.list_unsubscribe_headers_present(dataclasses.replace(sample, raw=stripped + b"MIME-Version:" + body))

    assert (result.level, result.detail) == ("error", "List-Unsubscribe with a web address and List-Unsubscribe-Post "
                                                      "are missing; Gmail and Yahoo refuse bulk mail without them.")


def test_an_empty_text_part_is_an_error(newsletter, relay):
    sample = presend.build_sample(draft(newsletter))
    raw = mime.build_message(from_name="Shop", from_email="news@alice.example", to_email="reader0@example.org",
                             subject=sample.subject, html=sample.html, text="", message_id="<1@mail.example.com>",
                             headers=sample.headers)

    result = presend.text_part_present(dataclasses.replace(sample, raw=raw))

    assert (result.level, result.detail) == ("error", "The message has no plain-text part. Write a text version, or "
                                                      "put text (not only images) in the HTML so one can be made from it.")


def test_html_over_gmails_clipping_limit_is_a_warning_that_does_not_block(newsletter, relay):
    long_body = "<p>" + WORDS * 350 + "</p>" + FOOTER
    broadcast = draft(newsletter, body=long_body)
    size = len(presend.build_sample(broadcast).html.encode())
    assert size > 102 * 1024

    results = presend.run(broadcast)

    assert found(results, "Size (Gmail clips at 102 KB)") == [("warning", (
        f"The HTML is {size / 1024:.1f} KB. Gmail clips messages over 102 KB and hides the rest, the unsubscribe "
        "link and the open pixel included, behind “View entire message”. Shorten it, or move long parts to a web "
        "page and link to it."
    ))]
    assert broadcasts.problems(broadcast) == []


def test_links_and_images_on_a_development_host_are_errors(newsletter, relay):
    body = ('<p>See <a href="http://localhost:3000/promo">the promo</a>, <a href="https://shop.local/a">this</a> and '
            '<a href="https://shop.example/ok">that</a>.</p><img src="http://192.168.1.20/logo.png" alt="Logo">'
            f"<p>{WORDS}</p>" + FOOTER)

    results = presend.run(draft(newsletter, body=body))

    assert found(results, "No links to a development address") == [("error", (
        "3 links or images point to a development address recipients cannot open: http://localhost:3000/promo, "
        "https://shop.local/a, http://192.168.1.20/logo.png. Use the public address instead."
    ))]


def test_a_development_site_url_is_an_error_for_a_real_backend(newsletter, relay, settings):
    settings.SITE_URL, settings.SITE_HOST = "http://127.0.0.1:8000", "127.0.0.1"

    results = presend.run(draft(newsletter))

    assert found(results, "No links to a development address") == [("error", (
        "The unsubscribe, tracking and view-in-browser links point to http://127.0.0.1:8000 (SITE_URL), which "
        "recipients cannot open. Set SITE_URL to this app's public https address."
    ))]


def test_a_development_site_url_is_only_a_warning_with_the_local_outbox(newsletter, settings):
    settings.SITE_URL, settings.SITE_HOST = "http://127.0.0.1:8000", "127.0.0.1"
    Backend.objects.create(name="Outbox", kind=Backend.OUTBOX, priority=1)

    results = presend.run(draft(newsletter))

    assert [level for level, _ in found(results, "No links to a development address")] == ["warning"]
    assert broadcasts.problems(draft(newsletter)) == []


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("app.localhost", True), ("127.0.0.1", True), ("[::1]", True), ("10.1.2.3", True),
    ("192.168.0.10", True), ("169.254.1.1", True), ("0.0.0.0", True), ("printer.local", True), ("shop.test", True),
    ("db.internal", True), ("nas.home.arpa", True), ("shop.example", False), ("example.com", False),
    ("93.184.216.34", False), ("testserver", False), ("", False),
])
def test_which_hosts_are_development_hosts(host, expected):
    assert presend.is_dev_host(host) is expected


def test_a_message_made_mostly_of_images_is_a_warning(newsletter, relay):
    body = ('<img src="https://cdn.example.com/a.png" alt=""><img src="https://cdn.example.com/b.png" alt="">'
            "<p>Big sale!</p>" + FOOTER)

    results = presend.run(draft(newsletter, body=body))

    assert found(results, "Images and text") == [("warning", (
        "2 images and only 8 words: filters read text, and a message made mostly of pictures looks like image "
        "spam. Put the message in words, at least 50 per image."
    ))]


def test_images_with_enough_words_pass_and_the_open_pixel_is_not_counted(newsletter, relay):
    body = f'<img src="https://cdn.example.com/a.png" alt=""><p>{WORDS}</p>' + FOOTER

    results = presend.run(draft(newsletter, body=body, track_opens=True))

    assert found(results, "Images and text") == [("ok", "66 words and 1 image.")]


# --- The registry --------------------------------------------------------------------------------------


@pytest.fixture
def registry():
    saved = dict(presend._CHECKS)
    yield
    presend._CHECKS.clear()
    presend._CHECKS.update(saved)


def test_a_registered_check_gets_the_sample_and_its_errors_block_sending(newsletter, relay, registry):
    @presend.check
    def from_domain(sample):
        return presend.Result(presend.ERROR, "From domain authenticated",
                              f"{sample.from_domain} has no DKIM record; publish it under Sending › Domains.")

    broadcast = draft(newsletter)

    assert presend.run(broadcast)[-1] == presend.Result(
        "error", "From domain authenticated", "alice.example has no DKIM record; publish it under Sending › Domains.")
    with pytest.raises(broadcasts.BroadcastError) as refused:
        broadcasts.send_now(broadcast)
    assert refused.value.reasons == ["alice.example has no DKIM record; publish it under Sending › Domains."]
    assert Broadcast.objects.get().status == "draft"


def test_a_check_that_breaks_is_a_warning_and_the_others_still_run(newsletter, relay, registry):
    @presend.register
    def broken(sample):
        raise RuntimeError("boom")

    results = presend.run(draft(newsletter))

    assert len(results) == 7
    assert results[-1] == presend.Result(
        "warning", "A check could not run",
        "The check tests.test_presend.test_a_check_that_breaks_is_a_warning_and_the_others_still_run.<locals>.broken "
        "stopped with an error; see the log.")


# --- Sequence steps -------------------------------------------------------------------------------------


def test_it_checks_a_sequence_step_with_the_sequences_sender_and_list(relay):
    sequence = build(activate=False)
    step = sequence.steps.get()
    step.body = '<p>Hello, see <a href="http://localhost:8000/x">this</a>.</p>' + FOOTER
    step.save()

    sample = presend.build_sample(step)
    results = presend.run(step)

    assert (sample.kind, sample.sender, sample.subject) == ("step", sequence.sender, "Step 1 for Sam")
    assert found(results, "No links to a development address") == [("error", (
        "1 link or image point to a development address recipients cannot open: http://localhost:8000/x. "
        "Use the public address instead."))]


# --- Refused at send time -------------------------------------------------------------------------------


DEV_BODY = '<p>Our <a href="http://localhost:3000/promo">promo</a>.</p>' + FOOTER
DEV_REASON = ("1 link or image point to a development address recipients cannot open: http://localhost:3000/promo. "
              "Use the public address instead.")


def test_send_now_and_schedule_refuse_an_error_with_the_reasons(newsletter, relay):
    broadcast = draft(newsletter, body=DEV_BODY)

    with pytest.raises(broadcasts.BroadcastError) as now:
        broadcasts.send_now(broadcast)
    with pytest.raises(broadcasts.BroadcastError) as later:
        broadcasts.schedule(broadcast, timezone.now() + timedelta(days=1))

    assert now.value.reasons == later.value.reasons == [DEV_REASON]
    assert Broadcast.objects.values_list("status", "scheduled_at").get() == ("draft", None)


def test_the_dashboard_refuses_to_send_and_says_why(bob_client, newsletter, relay, smtp_server):
    broadcast = draft(newsletter, body=DEV_BODY)

    response = bob_client.post(reverse("campaigns:broadcast_send", args=[broadcast.pk]), follow=True)

    assert DEV_REASON in response.text
    assert Broadcast.objects.get().status == "draft"
    assert smtp_server.messages == []


def test_the_api_refuses_to_send_with_400_and_each_reason(bob, newsletter, relay):
    api = APIClient()
    api.force_authenticate(bob)
    broadcast = draft(newsletter, body=DEV_BODY, sender=SenderFactory(postal_address=""))

    response = api.post(f"/api/v1/broadcasts/{broadcast.pk}/send/")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": [
        "The sender has no postal address; add one to the sender identity.",
        "The sender has no postal address. Add one in the sender's settings.",
        DEV_REASON,
    ]}
    assert Broadcast.objects.get().status == "draft"


def test_warnings_do_not_stop_a_send(newsletter, relay, smtp_server, settings, django_capture_on_commit_callbacks):
    settings.SITE_URL, settings.SITE_HOST = "http://mail.example.com", "mail.example.com"  # a warning
    broadcast = draft(newsletter)

    with django_capture_on_commit_callbacks(execute=True):
        assert broadcasts.send_now(broadcast) is True

    assert Broadcast.objects.get().status == "sent"
    assert len(smtp_server.messages) == 2


# --- Pages and roles ---------------------------------------------------------------------------------


def compose_post(newsletter, body):
    sender = SenderFactory()
    return {"name": "Spring sale", "sender": str(sender.pk), "subject": "Spring sale", "body_format": "html",
            "body": body, "text_body": "", "layout": "", "lists": [str(newsletter.pk)], "segment": "",
            "backend": "", "track_opens": "on", "track_clicks": "on"}


def test_the_composer_shows_the_check_of_the_unsaved_fields(bob_client, newsletter, relay):
    page = bob_client.get(reverse("campaigns:broadcast_create"))
    response = bob_client.post(reverse("campaigns:compose_presend"), compose_post(newsletter, DEV_BODY))

    assert f'hx-post="{reverse("campaigns:compose_presend")}"' in page.text
    assert response.status_code == 200
    assert "1 problem to fix before this can be sent." in response.text
    assert DEV_REASON in response.text
    assert response.context["presend_subscriber"].email in ("reader0@example.org", "reader1@example.org")


def test_the_composer_check_uses_the_chosen_subscriber(bob_client, newsletter, relay):
    data = {**compose_post(newsletter, BODY), "preview_email": "reader1@example.org"}

    response = bob_client.post(reverse("campaigns:compose_presend"), data)

    assert "Every check passed." in response.text
    assert "Checked on the message reader1@example.org would get, tracked links and all." in response.text


def test_the_step_editor_shows_the_check(bob_client, relay):
    sequence = build(activate=False)
    step = sequence.steps.get()
    data = {"step": str(step.pk), "subject": "Welcome", "body": DEV_BODY, "body_format": "html", "text_body": "",
            "layout": ""}

    page = bob_client.get(reverse("campaigns:step_edit", args=[sequence.pk, step.pk]))
    response = bob_client.post(reverse("campaigns:step_presend", args=[sequence.pk]), data)

    assert reverse("campaigns:step_presend", args=[sequence.pk]) in page.text
    assert response.status_code == 200
    assert DEV_REASON in response.text


def test_the_send_step_shows_every_result_and_disables_sending_on_an_error(bob_client, newsletter, relay):
    broadcast = draft(newsletter, body=DEV_BODY)

    response = bob_client.get(reverse("campaigns:broadcast_send", args=[broadcast.pk]))

    assert [r.level for r in response.context["presend"]] == ["ok", "ok", "ok", "ok", "error", "ok"]
    assert response.context["problems"] == [DEV_REASON]
    assert "Pre-send check" in response.text and "Every check passed." not in response.text
    assert '<button type="submit" class="primary" disabled' in response.text


def test_viewers_and_strangers_cannot_run_the_check(victor_client, mallory_client, newsletter, relay):
    sequence = build(activate=False)
    for client in (victor_client, mallory_client):
        assert client.post(reverse("campaigns:compose_presend"), compose_post(newsletter, BODY)).status_code == 403
        assert client.post(reverse("campaigns:step_presend", args=[sequence.pk]), {"body": BODY}).status_code == 403
