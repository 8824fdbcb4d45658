"""Import and segment pages in a real browser: the scripts run under the strict CSP, htmx swaps the previews."""

import pytest

from lists.models import ImportJob, Segment, Subscriber
from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.factories import MailingListFactory, SubscriptionFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_bob_builds_a_segment_with_a_live_count(page, live_server, bob):
    news = MailingListFactory(name="News")
    SubscriptionFactory(subscriber__email="ada@example.org", mailing_list=news)
    SubscriptionFactory(subscriber__email="grace@example.org")
    sign_in(page, live_server, "bob", PASSWORD)

    page.goto(f"{live_server.url}/segments/new/")
    page.get_by_label("Name", exact=True).fill("News readers")
    row = page.locator("[data-condition]").first
    assert row.get_by_label("List").is_hidden() and row.get_by_label("Value").is_hidden()
    row.get_by_label("Field").select_option("list")
    assert row.get_by_label("List").is_visible() and row.get_by_label("Value").is_hidden()
    assert row.get_by_label("Comparison").input_value() == "subscribed"
    row.get_by_label("List").select_option(label="News")
    page.locator("#segment-preview").get_by_text("1 subscriber matches.").wait_for()
    page.get_by_role("button", name="Save segment").click()

    page.get_by_text("Segment “News readers” saved.").wait_for()
    assert Segment.objects.get().conditions == [{"field": "list", "op": "subscribed", "value": news.pk}]


def test_bob_imports_a_file_and_sees_the_summary(page, live_server, bob, tmp_path):
    news = MailingListFactory(name="News")
    path = tmp_path / "people.csv"
    path.write_text("Email,First name,Last name,Plan\nada@example.org,Ada,Lovelace,pro\nnot-an-address,,,\n")
    sign_in(page, live_server, "bob", PASSWORD)

    page.goto(f"{live_server.url}/lists/{news.pk}/import/")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_label("These people agreed").check()
    page.get_by_role("button", name="Upload and choose the columns").click()
    page.get_by_role("heading", name="Choose the columns of people.csv").wait_for()
    assert page.get_by_label("Plan", exact=True).input_value() == "attribute"
    page.get_by_role("button", name="Start the import").click()

    page.get_by_text("Finished").wait_for()
    assert page.locator("#import-progress").get_by_text("invalid email address").is_visible()
    job = ImportJob.objects.get()
    assert (job.status, job.created, job.invalid) == (ImportJob.DONE, 1, 1)
    assert Subscriber.objects.get().attributes == {"plan": "pro"}
