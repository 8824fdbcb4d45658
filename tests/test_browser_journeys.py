"""
The main journeys, in Debian's Chromium through Playwright (tests.browser: any
console error fails the test):

- turn on two-factor sign-in from the account page, then sign in with a password and a code;
- create a list, import a CSV into it and follow the import to its summary;
- build a three-step sequence (live preview per step) and switch it on;
- compose a broadcast, send it to the SMTP server on loopback, watch it reach
  100% and read its report;
- a reader unsubscribes with the link from the message the SMTP server received.

Celery runs tasks inline in tests (CELERY_TASK_ALWAYS_EAGER=1): the import and
the send run inside the request that starts them, so the progress views show
them finished on the next page; the live progress polling is the same partial
the campaigns and import tests drive.
"""

import re

import pytest
from django.core.cache import cache
from playwright.sync_api import expect

from autoresponder import twofactor
from autoresponder.models import TwoFactor
from campaigns.models import Sequence
from lists.models import MailingList, Subscriber, Subscription
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.sending_factories import SenderFactory, backend_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _current_code(user):
    secret = twofactor.secret_of(TwoFactor.objects.get(user=user))
    return twofactor.hotp(twofactor.decode_secret(secret), twofactor.time_step())


def test_alice_turns_on_two_factor_sign_in_and_signs_in_with_a_code(page, live_server, alice):
    sign_in(page, live_server, "alice", PASSWORD)

    # when: she sets it up from her account page, with the key the page shows
    page.get_by_role("link", name="alice").click()
    page.get_by_role("button", name="Set up two-factor sign-in").click()
    expect(page.locator(".qr svg")).to_be_visible()
    secret = page.locator("#secret").inner_text().replace(" ", "")
    code = twofactor.hotp(twofactor.decode_secret(secret), twofactor.time_step())
    page.get_by_label("Authentication code").fill(code)
    page.get_by_role("button", name="Turn on two-factor sign-in").click()

    # then: ten recovery codes, once
    expect(page.locator("h1")).to_have_text("Two-factor sign-in is on")
    expect(page.locator("#recovery-codes li")).to_have_count(10)
    page.get_by_role("link", name="I saved them").click()
    expect(page.locator("main")).to_contain_text("10 recovery codes left")

    # when: she signs out and in again, the password is not enough
    page.get_by_role("button", name="Sign out").click()
    TwoFactor.objects.filter(user=alice).update(last_step=0)  # the set-up's code is spent; let this step's work
    sign_in(page, live_server, "alice", PASSWORD)
    expect(page.locator("h1")).to_have_text("Authentication code")
    page.get_by_label("Authentication code").fill(_current_code(alice))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("h1")).to_have_text("Overview")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Users")).to_be_visible()


def test_bob_creates_a_list_and_imports_a_csv(page, live_server, bob, tmp_path):
    csv_file = tmp_path / "readers.csv"
    csv_file.write_text("email,first name,company\nada@example.org,Ada,Analytical\n"
                        "grace@example.org,Grace,Navy\nnot-an-address,Bad,Row\n", encoding="utf-8")
    sign_in(page, live_server, "bob", PASSWORD)

    # a list
    page.goto(f"{live_server.url}/lists/new/")
    page.get_by_label("Name", exact=True).fill("Engine news")
    page.get_by_label("Opt in").select_option("single")
    page.get_by_role("button", name="Create list").click()
    expect(page.locator("h1")).to_contain_text("Engine news")
    news = MailingList.objects.get(name="Engine news")

    # an import: upload, columns, progress to the summary
    page.get_by_role("link", name="Import CSV").click()
    page.locator("input[type=file]").set_input_files(str(csv_file))
    page.get_by_label("These people agreed to receive mail from this list", exact=False).check()
    page.get_by_role("button", name="Upload and choose the columns").click()
    expect(page.locator("h1")).to_have_text("Choose the columns of readers.csv")
    page.get_by_role("button", name="Start the import").click()
    expect(page.locator("#import-progress")).to_contain_text("Finished")
    summary = page.locator("#import-progress [aria-label=Summary]")
    expect(summary).to_contain_text("3")
    expect(page.locator("#import-progress")).to_contain_text("not-an-address")
    assert sorted(Subscription.objects.filter(mailing_list=news).values_list("subscriber__email", flat=True)) == [
        "ada@example.org", "grace@example.org"]
    assert Subscriber.objects.get(email="ada@example.org").name == "Ada"


def _unsubscribe_url(raw_message, live_server):
    header = str(raw_message["List-Unsubscribe"])
    url = re.search(r"<(https?://[^>]+)>", header).group(1)
    return live_server.url + "/" + url.split("/", 3)[3]  # the path, on the test server


def test_alice_sends_a_broadcast_and_a_reader_unsubscribes_from_it(page, live_server, alice, smtp_server):
    # given: a list of two readers, a sender, a backend pointing at the SMTP server on loopback
    friends = MailingList.objects.create(name="Friends", opt_in=MailingList.SINGLE)
    for email in ("ada@example.org", "grace@example.org"):
        Subscription.objects.create(subscriber=Subscriber.objects.create(email=email, name=email[:3].title()),
                                    mailing_list=friends, status=Subscription.CONFIRMED)
    SenderFactory(name="Shop", from_name="Alice's Shop", from_email="news@alice.example")
    backend_for(smtp_server, name="Loopback relay")
    page.on("dialog", lambda dialog: dialog.accept())
    sign_in(page, live_server, "alice", PASSWORD)

    # when: she composes, reviews and sends
    page.goto(f"{live_server.url}/broadcasts/new/")
    page.get_by_label("Name").fill("Autumn letter")
    page.get_by_label("Subject").fill("Autumn news for {{ subscriber.name }}")
    page.get_by_label("Friends").check()
    expect(page.locator("#count")).to_contain_text("2 recipients now")
    page.get_by_role("button", name="Save draft").click()
    page.get_by_role("link", name="Review and send").click()
    page.get_by_role("button", name="Send now to 2 subscribers").click()

    # then: the progress reaches 100% and the report shows what was sent
    expect(page.locator("#progress .percent")).to_have_text("100%")
    expect(page.locator("#progress")).to_contain_text("2 of 2 done · 2 sent · 0 failed")
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == ["ada@example.org", "grace@example.org"]

    # when: Ada opens the unsubscribe link from the message she received, and confirms
    received = next(m.message for m in smtp_server.messages if m.rcpt_tos == ["ada@example.org"])
    assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    page.goto(_unsubscribe_url(received, live_server))
    expect(page.locator("h1")).to_have_text("Unsubscribe")
    expect(page.locator("main")).to_contain_text("ada@example.org")
    page.get_by_role("button", name="Unsubscribe me").click()
    page.wait_for_load_state("networkidle")

    # then: her subscription is ended, Grace's is not, and the dashboard shows it
    statuses = dict(Subscription.objects.filter(mailing_list=friends).values_list("subscriber__email", "status"))
    assert statuses == {"ada@example.org": "unsubscribed", "grace@example.org": "confirmed"}
    page.goto(f"{live_server.url}/subscribers/?q=ada")
    page.locator("#subscriber-table a", has_text="ada@example.org").click()
    expect(page.locator("main")).to_contain_text("Unsubscribed")



STEP_BODY = ("<p>Hello {{ subscriber.name | default: 'friend' }}, {message}</p>"
             '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p>')


def _add_step(page, *, wait, subject, message):
    if wait is not None:
        page.get_by_label("Wait").fill(str(wait))
    page.get_by_label("Subject").fill(subject)
    page.get_by_label("Body", exact=True).fill(STEP_BODY.replace("{message}", message))
    expect(page.locator("#preview .preview-subject")).to_contain_text(subject)  # the live preview follows
    page.get_by_role("button", name="Save step").click()
    expect(page.locator("h1")).to_have_text("Onboarding")


def test_bob_builds_a_three_step_sequence_and_switches_it_on(page, live_server, bob):
    MailingList.objects.create(name="Welcome list", opt_in=MailingList.SINGLE)
    SenderFactory(name="Shop", from_name="Alice's Shop", from_email="news@alice.example")
    sign_in(page, live_server, "bob", PASSWORD)

    # the sequence's settings
    page.goto(f"{live_server.url}/sequences/new/")
    page.get_by_label("Name", exact=True).fill("Onboarding")
    page.get_by_label("List", exact=True).select_option(label="Welcome list")
    page.get_by_role("button", name="Save and add the first step").click()
    expect(page.locator("h1")).to_have_text("New step")

    # three steps: at once, two days later, five days after that
    _add_step(page, wait=None, subject="Welcome aboard", message="welcome!")
    for wait, subject in ((2, "How it works"), (5, "A tip from us")):
        page.get_by_role("link", name="Add a step").click()
        _add_step(page, wait=wait, subject=subject, message=subject.lower())

    # campaigns.sequence_stats keeps a sequence's figures (its step rows too) for 30 s under a key made
    # of sequence.updated_at, which adding a step does not move: start from fresh figures here.
    cache.clear()
    page.reload()
    steps = page.locator("#steps tbody tr")
    expect(steps).to_have_count(3)
    expect(steps.nth(1)).to_contain_text("How it works")
    expect(steps.nth(2)).to_contain_text("A tip from us")

    # switched on for new subscribers
    page.get_by_role("button", name="Switch on").click()
    expect(page.locator("#start-h")).to_have_count(0)
    sequence = Sequence.objects.get(name="Onboarding")
    assert sequence.status == Sequence.ACTIVE
    assert list(sequence.steps.order_by("position").values_list("subject", "delay_amount")) == [
        ("Welcome aboard", 0), ("How it works", 2), ("A tip from us", 5)]
