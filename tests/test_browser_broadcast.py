"""In a real browser: alice composes a broadcast, watches the live preview, sends it and sees it finish.

Celery runs tasks inline in tests (CELERY_TASK_ALWAYS_EAGER=1), so "send now" writes
the ledger and sends every message to the SMTP server on loopback before the page
reloads; the progress view then reads the finished counters.
"""

import re

import pytest
from playwright.sync_api import expect

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import MailingListFactory
from tests.sending_factories import SenderFactory, audience, backend_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BODY = (
    "<html><body><h1>Launch day, {{ subscriber.first_name | default: 'friend' }}!</h1>\n"
    '<p>Our new shop is open. <a href="https://shop.example/launch">Have a look</a>.</p>\n'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p></body></html>'
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_alice_composes_previews_and_sends_a_broadcast(page, live_server, alice, smtp_server):
    # given: a list of three readers, a sender and a backend pointing at the SMTP server
    friends = MailingListFactory(name="Friends")
    audience(friends, 3)
    SenderFactory(name="Shop", from_name="Alice's Shop", from_email="news@alice.example")
    backend_for(smtp_server, name="Loopback relay")
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server, "alice", PASSWORD)

    # when: she composes
    page.goto(f"{live_server.url}/broadcasts/new/")
    page.get_by_label("Name").fill("Launch")
    page.get_by_label("Subject").fill("Launch day for {{ subscriber.first_name }}")
    page.get_by_label("Body", exact=True).fill(BODY)
    page.get_by_label("Friends").check()

    # then: the live preview renders the message in the sandboxed iframe, for the sample subscriber
    expect(page.locator("#preview .preview-subject")).to_contain_text("Launch day for Sam")
    frame = page.frame_locator("#preview iframe")
    expect(frame.locator("h1")).to_have_text("Launch day, Sam!")
    assert page.locator("#preview iframe").get_attribute("sandbox") == ""
    expect(page.locator("#count")).to_contain_text("3 recipients now")

    # and it follows her typing
    page.get_by_label("Subject").fill("Doors open, {{ subscriber.first_name }}")
    expect(page.locator("#preview .preview-subject")).to_contain_text("Doors open, Sam")

    # and shows a phone's width on request
    page.get_by_role("button", name="Mobile").click()
    expect(page.locator(".preview-stage")).to_have_class(re.compile(r"\bmobile\b"))
    assert page.locator("#preview iframe").bounding_box()["width"] <= 390

    # when: she saves, reviews and sends
    page.get_by_role("button", name="Save draft").click()
    expect(page.locator("h1")).to_have_text("Launch")
    page.get_by_role("link", name="Review and send").click()
    expect(page.locator("#recipients")).to_have_text("3")
    page.get_by_role("button", name="Send now to 3 subscribers").click()

    # then: the progress reaches 100% and the messages are at the SMTP server
    expect(page.locator("#progress .percent")).to_have_text("100%")
    expect(page.locator("#progress")).to_contain_text("3 of 3 done · 3 sent · 0 failed")
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader2@example.org"]
    first = smtp_server.messages[0].message
    assert first["Subject"].startswith("Doors open, Reader")
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
