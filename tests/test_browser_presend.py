"""In a real browser: the composer's pre-send check follows the typing, and an error it finds
keeps the broadcast from being sent."""

import pytest
from playwright.sync_api import expect

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import MailingListFactory
from tests.sending_factories import SenderFactory, audience, backend_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p>'


def test_bob_sees_the_check_follow_his_typing(page, live_server, bob, smtp_server):
    # given: a list, a sender and a backend
    friends = MailingListFactory(name="Friends")
    audience(friends, 2)
    SenderFactory(name="Shop")
    backend_for(smtp_server, name="Loopback relay")
    sign_in(page, live_server, "bob", PASSWORD)

    # when: he writes a link to his development machine
    page.goto(f"{live_server.url}/broadcasts/new/")
    page.get_by_label("Name").fill("Launch")
    page.get_by_label("Subject").fill("Launch day")
    page.get_by_label("Friends").check()
    page.get_by_label("Body", exact=True).fill(
        '<p>Our shop is open: <a href="http://localhost:8000/shop">have a look</a>.</p>' + FOOTER)

    # then: the check names it as a problem to fix
    check = page.locator("#presend")
    expect(check).to_contain_text("1 problem to fix before this can be sent.")
    expect(check.locator(".presend-error")).to_contain_text("http://localhost:8000/shop")

    # and when he links to the public shop instead, the problem goes
    page.get_by_label("Body", exact=True).fill(
        '<p>Our shop is open: <a href="https://shop.example/">have a look</a>.</p>' + FOOTER)
    expect(check).to_contain_text("It can be sent")
    expect(check.locator(".presend-error")).to_have_count(0)
