"""
Stored XSS, in a real browser: a script payload saved in every field that comes
from outside or from another user (subscriber name, attribute key and value,
list name, tag, consent user agent, template name/subject/body, segment name,
broadcast name and subject, sender, backend name and its last error, an
imported file's name, a captured mail's subject, a sequence and its step, a
REST hook's target and a receiving server's error), then every dashboard page
that shows them is opened. The payload must appear as text, escaped, and never
run: window.__xss stays undefined, no <img src=x> or injected <script> exists,
and the console stays clean (tests.browser fails the test on any console error,
CSP violations included).
"""

import uuid

import pytest
from django.core import mail
from django.utils import timezone

from autoresponder.outbox import OutboxBackend
from campaigns.models import Event, Hook, HookDelivery, Layout, Link, Message, Sequence, Step, Template
from lists.models import ImportJob, MailingList, Segment, Subscriber, Subscription, Tag
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.sending_factories import BroadcastFactory, SenderFactory, SMTPBackendFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PAYLOAD = '"><script>window.__xss=1</script><img src=x onerror=window.__xss=1>'
SHORT = "<img src=x onerror=window.__xss=1>"  # for fields too short for the whole payload


@pytest.fixture
def poisoned(alice):
    """Every object with the payload in its text fields; returns the pages that show them."""
    mailing_list = MailingList.objects.create(name=PAYLOAD, description=PAYLOAD, from_name=PAYLOAD)
    subscriber = Subscriber.objects.create(
        email="mallory@example.org", name=PAYLOAD, attributes={PAYLOAD: PAYLOAD, "plan": PAYLOAD})
    Subscription.objects.create(
        subscriber=subscriber, mailing_list=mailing_list, status=Subscription.CONFIRMED, consent_at=timezone.now(),
        consent_user_agent=PAYLOAD, consent_form=PAYLOAD, consent_text=PAYLOAD)
    subscriber.tags.add(Tag.objects.create(name=PAYLOAD))
    segment = Segment.objects.create(name=PAYLOAD, conditions=[])
    layout = Layout.objects.create(name=SHORT, html=f"<html><body>{PAYLOAD}{{{{ content }}}}</body></html>")
    template = Template.objects.create(name=SHORT, subject=PAYLOAD, body=f"<p>{PAYLOAD}</p>", layout=layout)
    sender = SenderFactory(name=SHORT, from_name=PAYLOAD, postal_address=PAYLOAD)
    backend = SMTPBackendFactory(name=SHORT, last_error=PAYLOAD, last_error_at=timezone.now())
    broadcast = BroadcastFactory(name=PAYLOAD, subject=PAYLOAD, sender=sender, lists=[mailing_list],
                                 status="sent", recipients_count=1, sent_count=1)
    message = Message.objects.create(broadcast=broadcast, subscriber=subscriber, email=subscriber.email,
                                     status=Message.FAILED, next_attempt_at=timezone.now(), last_response=PAYLOAD)
    link = Link.objects.create(url=f"https://shop.example/?q={PAYLOAD}", url_hash="f" * 64)
    Event.objects.create(uid=uuid.uuid4(), kind=Event.CLICK, message=message, scope="broadcast",
                         scope_id=broadcast.pk, link=link, created_at=timezone.now())
    Event.objects.create(uid=uuid.uuid4(), kind=Event.BOUNCE, message=message, scope="broadcast",
                         scope_id=broadcast.pk, detail=PAYLOAD, created_at=timezone.now())
    job = ImportJob.objects.create(mailing_list=mailing_list, file="x.csv", original_name=PAYLOAD,
                                   status=ImportJob.DONE, errors=[{"line": 2, "reason": PAYLOAD}])
    sequence = Sequence.objects.create(name=PAYLOAD, mailing_list=mailing_list, sender=sender)
    Step.objects.create(sequence=sequence, position=1, name=PAYLOAD, subject=PAYLOAD, body=f"<p>{PAYLOAD}</p>")
    hook = Hook.objects.create(event="subscriber.created", target=f"https://hooks.example/?q={PAYLOAD}", owner=alice,
                               is_active=False, disabled_at=timezone.now(), disabled_reason=PAYLOAD)
    HookDelivery.objects.create(
        uid=uuid.uuid4(), hook=hook, event=hook.event, body={}, next_attempt_at=timezone.now(), last_status=500,
        expires_at=timezone.now(), last_error=PAYLOAD, attempt_log=[{"at": "now", "status": 500, "ms": 3, "error": PAYLOAD}])
    OutboxBackend().send_messages([mail.EmailMessage(PAYLOAD, PAYLOAD, "a@example.org", ["b@example.org"])])
    return [
        "/", "/lists/", f"/lists/{mailing_list.pk}/", f"/lists/{mailing_list.pk}/edit/",
        "/subscribers/", f"/subscribers/{subscriber.pk}/", f"/subscribers/{subscriber.pk}/edit/",
        f"/subscribers/?tag={PAYLOAD}", "/segments/", f"/segments/{segment.pk}/",
        f"/imports/{job.pk}/", "/templates/", f"/templates/{template.pk}/", f"/templates/{template.pk}/edit/",
        "/broadcasts/", f"/broadcasts/{broadcast.pk}/", "/broadcasts/new/",
        "/settings/", "/sending/", f"/sending/{backend.pk}/", "/outbox/",
        "/sequences/", f"/sequences/{sequence.pk}/", "/hooks/", f"/hooks/{hook.pk}/",
    ]


def _sandbox_blocks(page):
    """Take out of the console log the sandbox's own reports of the payload it stopped in a message
    preview (the iframe has no allow-scripts); returns how many there were."""
    blocked = [e for e in page.js_errors if "Blocked script execution in" in e and "/previews/" in e
               and "sandboxed and the 'allow-scripts' permission is not set" in e]
    page.js_errors[:] = [e for e in page.js_errors if e not in blocked]
    return len(blocked)


def _assert_inert(page, url):
    assert page.evaluate("typeof window.__xss") == "undefined", f"the payload ran on {url}"
    assert page.locator('img[src="x"]').count() == 0, f"an injected <img> on {url}"
    injected = page.evaluate("[...document.scripts].filter(s => s.textContent.includes('__xss')).length")
    assert injected == 0, f"an injected <script> on {url}"


def test_stored_payloads_render_as_text_and_never_run(page, live_server, poisoned):
    sign_in(page, live_server, "alice", PASSWORD)
    shown = []
    for url in poisoned:
        response = page.goto(live_server.url + url)
        assert response.status == 200, f"{url} answered {response.status}"
        page.wait_for_load_state("networkidle")
        _assert_inert(page, url)
        # the markup was escaped: the payload is there as text (or as a form field's value)
        text = page.locator("body").inner_text()
        values = page.evaluate("[...document.querySelectorAll('input, textarea')].map(e => e.value).join('\\n')")
        if PAYLOAD in text or SHORT in text or PAYLOAD in values or SHORT in values:
            shown.append(url)
    assert shown == poisoned, f"pages that did not show the payload as text: {sorted(set(poisoned) - set(shown))}"
    _sandbox_blocks(page)  # the template pages preview the poisoned body; see the next test


def test_the_broadcast_preview_keeps_the_payload_in_a_script_less_sandbox(page, live_server, poisoned):
    sign_in(page, live_server, "alice", PASSWORD)
    template = Template.objects.get(name=SHORT)

    page.goto(f"{live_server.url}/templates/{template.pk}/")
    page.wait_for_load_state("networkidle")

    _assert_inert(page, "template page")
    frame = page.locator("iframe").first
    assert frame.get_attribute("sandbox") == ""
    inner = page.frame_locator("iframe").first
    assert inner.locator("body").inner_text() != ""  # the message rendered…
    assert page.frames[-1].evaluate("typeof window.__xss") == "undefined"  # …and its script did not run
    assert _sandbox_blocks(page) >= 1  # because the sandbox stopped it, and said so
