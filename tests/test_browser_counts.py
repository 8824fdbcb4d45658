"""In a real browser: the send step and the segment editor show their counts once these load
(htmx, after the page), count again on request, and raise no JavaScript or CSP error."""

from decimal import Decimal

import pytest
from playwright.sync_api import expect

from lists.models import Segment, Suppression
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BroadcastFactory, SenderFactory, SMTPBackendFactory, audience

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def test_bob_sees_the_recipients_load_on_the_send_step_and_counts_again(page, live_server, bob):
    # given: three readers and a suppressed one on a list, a draft to it, a backend with a price
    friends = MailingListFactory(name="Friends")
    audience(friends, 3)
    SubscriptionFactory(mailing_list=friends, subscriber__email="gone@example.org")
    Suppression.objects.create(email="gone@example.org", reason=Suppression.HARD_BOUNCE)
    SMTPBackendFactory(name="Relay", price_per_thousand=Decimal("1000"))
    draft = BroadcastFactory(name="Launch", sender=SenderFactory(), lists=[friends])
    sign_in(page, live_server, "bob", PASSWORD)

    # when: he opens the send step
    page.goto(f"{live_server.url}/broadcasts/{draft.pk}/send/")

    # then: the count arrives after the page, with the cost, and names the number on the button
    expect(page.locator("#recipients")).to_have_text("3")
    expect(page.locator("#audience")).to_contain_text("3.00")
    expect(page.get_by_role("button", name="Send now to 3 subscribers")).to_be_visible()

    # when: someone joins, and he asks to count again
    audience(friends, 1, prefix="newcomer")
    page.get_by_role("button", name="Count again").click()

    # then: the fresh count replaces the kept one, the button follows
    expect(page.locator("#recipients")).to_have_text("4")
    expect(page.get_by_role("button", name="Send now to 4 subscribers")).to_be_visible()


def test_bob_sees_a_segments_matches_load_and_follow_his_changes(page, live_server, bob):
    # given: a segment of one reader among three
    friends = MailingListFactory(name="Friends")
    audience(friends, 3)
    segment = Segment.objects.create(name="One", conditions=[{"field": "email", "op": "is",
                                                              "value": "reader1@example.org"}])
    sign_in(page, live_server, "bob", PASSWORD)

    # when: he opens it
    page.goto(f"{live_server.url}/segments/{segment.pk}/")

    # then: its count loads after the page
    expect(page.locator("#segment-preview")).to_contain_text("1 subscriber matches.")

    # when: he widens the condition
    page.get_by_label("Comparison").first.select_option("ends_with")
    page.get_by_label("Value").first.fill("@example.org")
    page.get_by_label("Value").first.press("Tab")

    # then: the count follows
    expect(page.locator("#segment-preview")).to_contain_text("3 subscribers match.")
