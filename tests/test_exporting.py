"""CSV exports: formula escaping, list and search exports streamed, roles, limits."""

import csv
import io

import pytest
from django.db import connection
from django.http import StreamingHttpResponse
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from lists.exporting import BOM, escape_cell
from lists.models import Subscriber, Subscription, Tag
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"),
    ("+49 30 123", "'+49 30 123"),
    ("-2", "'-2"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\t=cmd", "'\t=cmd"),
    ("\r=cmd", "'\r=cmd"),
    ("ada@example.org", "ada@example.org"),
    ("a=b", "a=b"),
    ("", ""),
    (None, ""),
    (42, "42"),
])
def test_escape_cell_neutralises_every_formula_start(value, cell):
    assert escape_cell(value) == cell


def rows_of(response):
    assert isinstance(response, StreamingHttpResponse)
    text = b"".join(response.streaming_content).decode("utf-8")
    assert text.startswith(BOM)
    return list(csv.reader(io.StringIO(text[len(BOM):])))


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Weekly Letter")


def test_list_export_has_statuses_tags_and_attribute_columns(victor_client, newsletter):
    ada = SubscriberFactory(email="ada@example.org", name="=HYPERLINK(\"http://evil\")",
                            attributes={"plan": "pro", "seats": 3}, time_zone="Europe/London")
    ada.tags.add(Tag.objects.create(name="vip"), Tag.objects.create(name="beta"))
    SubscriptionFactory(subscriber=ada, mailing_list=newsletter, status=Subscription.CONFIRMED, consent_form="signup")
    SubscriptionFactory(subscriber__email="bob@example.org", subscriber__name="Bob",
                        subscriber__attributes={"country": "-DE"}, mailing_list=newsletter,
                        status=Subscription.UNSUBSCRIBED)
    SubscriptionFactory(subscriber__email="elsewhere@example.org")  # another list: not exported

    response = victor_client.get(reverse("lists:export_list", args=[newsletter.pk]))

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="list-')
    rows = rows_of(response)
    assert rows[0] == ["email", "name", "time_zone", "subscription_status", "source", "subscribed_at",
                       "confirmed_at", "unsubscribed_at", "consent_form", "tags", "attribute:country",
                       "attribute:plan", "attribute:seats"]
    assert [r[:5] + r[8:] for r in rows[1:]] == [
        ["ada@example.org", "'=HYPERLINK(\"http://evil\")", "Europe/London", "confirmed", "admin", "signup",
         "beta, vip", "", "pro", "3"],
        ["bob@example.org", "Bob", "", "unsubscribed", "admin", "", "", "'-DE", "", ""],
    ]


def test_search_export_applies_the_filters(victor_client, newsletter):
    SubscriptionFactory(subscriber__email="ada@gmail.com", mailing_list=newsletter)
    SubscriptionFactory(subscriber__email="grace@gmail.com", mailing_list=newsletter, status=Subscription.UNCONFIRMED)
    SubscriberFactory(email="linus@gmail.com")

    response = victor_client.get(reverse("lists:export_search"),
                                 {"q": "gmail", "list": newsletter.pk, "status": "confirmed", "tag": "nonexistent"})

    rows = rows_of(response)
    assert rows[0] == ["email", "name", "time_zone", "status", "created_at", "tags"]
    assert [r[0] for r in rows[1:]] == ["ada@gmail.com"]


def test_search_export_drops_unknown_filter_values(victor_client):
    SubscriberFactory(email="ada@example.org")
    rows = rows_of(victor_client.get(reverse("lists:export_search"), {"status": "bogus", "list": "x", "segment": "1"}))
    assert [r[0] for r in rows[1:]] == ["ada@example.org"]


def test_export_reads_in_chunks_with_a_fixed_number_of_queries(victor_client, newsletter):
    def queries_for_export():
        with CaptureQueriesContext(connection) as captured:
            rows_of(victor_client.get(reverse("lists:export_list", args=[newsletter.pk])))
        return len(captured)

    SubscriptionFactory.create_batch(3, mailing_list=newsletter)
    few = queries_for_export()
    SubscriptionFactory.create_batch(30, mailing_list=newsletter)
    assert queries_for_export() == few


def test_exports_are_denied_without_a_role(mallory_client, client, newsletter):
    for url in (reverse("lists:export_list", args=[newsletter.pk]), reverse("lists:export_search")):
        assert mallory_client.get(url).status_code == 403
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_exports_are_rate_limited_per_user(victor_client, newsletter):
    url = reverse("lists:export_list", args=[newsletter.pk])
    for _ in range(30):
        assert victor_client.get(url).status_code == 200
    response = victor_client.get(url)
    assert response.status_code == 429
    assert response.content.decode() == "You started 30 exports in the last hour. Wait a while and try again."


def test_export_of_an_unknown_list_is_404(victor_client):
    assert victor_client.get(reverse("lists:export_list", args=[999999])).status_code == 404
    assert Subscriber.objects.count() == 0


def test_export_command_writes_a_list_or_a_search(tmp_path, newsletter):
    from django.core.management import CommandError, call_command

    SubscriptionFactory(subscriber__email="ada@example.org", subscriber__name="+Ada", mailing_list=newsletter)
    SubscriberFactory(email="grace@example.org", status=Subscriber.BLOCKLISTED)
    target = tmp_path / "out.csv"

    call_command("export_subscribers", "--list", str(newsletter.pk), "--output", str(target))
    rows = list(csv.reader(io.StringIO(target.read_text(encoding="utf-8")[len(BOM):])))
    assert [r[:4] for r in rows] == [["email", "name", "time_zone", "subscription_status"],
                                     ["ada@example.org", "'+Ada", "", "confirmed"]]

    call_command("export_subscribers", "--status", "blocklisted", "--output", str(target))
    assert [r[0] for r in csv.reader(io.StringIO(target.read_text(encoding="utf-8")[len(BOM):]))] == [
        "email", "grace@example.org"]
    with pytest.raises(CommandError, match="There is no list with id 999999."):
        call_command("export_subscribers", "--list", "999999")
    with pytest.raises(CommandError, match="Unknown status 'gone'"):
        call_command("export_subscribers", "--status", "gone")


def test_exporting_a_broken_segment_says_what_to_do(victor_client):
    from lists.models import Segment

    segment = Segment.objects.create(name="Old", conditions=[{"field": "phone", "op": "is", "value": "1"}])

    response = victor_client.get(reverse("lists:export_search"), {"segment": segment.pk})

    assert response.status_code == 400
    assert response.content.decode() == ("This segment cannot be exported: Condition 1: “phone” is not a field "
                                         "segments can filter on. Edit the segment first.")
