"""Cost (campaigns.costs): the estimate in the composer, a broadcast's actual cost stored when it
finishes (each message at its backend's price), the monthly totals on the overview, and the
partial indexes that keep those figures and the quota cheap."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from campaigns import broadcasts, costs, dashboard_services
from campaigns.models import Backend, Broadcast, Message
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, SenderFactory, SMTPBackendFactory, audience, backend_for

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture
def newsletter():
    mailing_list = MailingListFactory(name="Newsletter")
    audience(mailing_list, 3)
    return mailing_list


@pytest.fixture
def relay(smtp_server):
    return backend_for(smtp_server, name="Relay", price_per_thousand=Decimal("1500"))


def sent_rows(backend, count, *, at, broadcast=None, status=Message.SENT):
    Message.objects.bulk_create(
        Message(broadcast=broadcast, email=f"r{i}@example.org", status=status, backend=backend, sent_at=at,
                next_attempt_at=at or NOW)
        for i in range(count)
    )


# --- Before sending: the estimate ---------------------------------------------------------------------


def test_the_composer_estimates_the_cost_at_the_backends_price(bob_client, newsletter, relay):
    sender = SenderFactory()
    data = {"sender": str(sender.pk), "lists": [str(newsletter.pk)], "backend": str(relay.pk), "subject": "Hi",
            "body": "<p>Hi</p>", "body_format": "html"}

    response = bob_client.post(reverse("campaigns:compose_count"), data)

    assert (response.context["recipients"], response.context["cost"]) == (3, Decimal("4.50"))
    assert "about <strong>4.50</strong> at 1500 per 1,000 through Relay" in " ".join(response.text.split())


def test_the_estimate_is_zero_without_a_price(newsletter, smtp_server):
    backend_for(smtp_server, price_per_thousand=Decimal("0"))

    assert broadcasts.estimate_cost(BroadcastFactory(lists=[newsletter])) == Decimal("0.00")


# --- After sending: the actual cost --------------------------------------------------------------------


def send_to_the_end(broadcast, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert broadcasts.send_now(broadcast)
    broadcast.refresh_from_db()


def test_a_finished_broadcast_stores_its_cost(newsletter, relay, smtp_server, django_capture_on_commit_callbacks):
    broadcast = BroadcastFactory(lists=[newsletter])

    send_to_the_end(broadcast, django_capture_on_commit_callbacks)

    assert (broadcast.status, broadcast.sent_count, broadcast.cost) == ("sent", 3, Decimal("4.5000"))
    assert len(smtp_server.messages) == 3


def test_each_message_costs_the_price_of_the_backend_that_sent_it(newsletter, relay):
    cheap = SMTPBackendFactory(name="Cheap", price_per_thousand=Decimal("0.1"))
    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.SENDING)
    sent_rows(relay, 2, at=NOW, broadcast=broadcast)
    sent_rows(cheap, 5, at=NOW, broadcast=broadcast)
    sent_rows(relay, 4, at=NOW, broadcast=broadcast, status=Message.FAILED)  # failures cost nothing

    assert costs.record(broadcast.pk) == Decimal("3.0005")
    assert Broadcast.objects.get().cost == Decimal("3.0005")


def test_a_cancelled_broadcast_gets_its_cost_once_nothing_is_in_flight(alice_client, newsletter, relay):
    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.CANCELLED)
    sent_rows(relay, 2, at=NOW, broadcast=broadcast)
    sent_rows(relay, 1, at=None, broadcast=broadcast, status=Message.SENDING)
    url = reverse("campaigns:broadcast_detail", args=[broadcast.pk])

    in_flight = alice_client.get(url)
    Message.objects.filter(status=Message.SENDING).update(status=Message.SENT, sent_at=NOW)
    landed = alice_client.get(url)

    assert in_flight.context["cost"] is None
    assert "Cost: counted when sending ends" in in_flight.text
    assert Broadcast.objects.get().cost == landed.context["cost"] == Decimal("4.5000")
    assert '<div class="stat" id="cost"><div class="value">4.50</div>' in landed.text


def test_a_sending_broadcast_has_no_cost_yet(newsletter, relay):
    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.SENDING)
    sent_rows(relay, 2, at=NOW, broadcast=broadcast)

    assert costs.actual(broadcast) is None
    assert Broadcast.objects.get().cost is None


def test_retrying_failed_messages_clears_the_stored_cost(newsletter, relay):
    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.SENT, cost=Decimal("3"))
    sent_rows(relay, 1, at=NOW, broadcast=broadcast, status=Message.FAILED)

    broadcasts.retry_messages(list(Message.objects.values_list("pk", flat=True)))

    assert Broadcast.objects.values_list("status", "cost").get() == ("sending", None)


def test_the_api_shows_the_cost(alice, newsletter, relay):
    from rest_framework.test import APIClient

    broadcast = BroadcastFactory(lists=[newsletter], status=Broadcast.SENT, cost=Decimal("4.5"))
    api = APIClient()
    api.force_authenticate(alice)

    assert api.get(f"/api/v1/broadcasts/{broadcast.pk}/").json()["cost"] == "4.5000"


# --- Each month ---------------------------------------------------------------------------------------


@pytest.fixture
def two_months(relay, settings):
    settings.TIME_ZONE = "UTC"
    ses = Backend.objects.create(name="SES", kind=Backend.AMAZON_SES, priority=20, price_per_thousand=Decimal("0.1"))
    idle = SMTPBackendFactory(name="Idle", price_per_thousand=Decimal("9"))
    sent_rows(relay, 3, at=datetime(2026, 3, 1, 0, 0, tzinfo=UTC))  # the first second of March
    sent_rows(ses, 2000, at=datetime(2026, 3, 10, tzinfo=UTC))
    sent_rows(relay, 2, at=datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    sent_rows(relay, 7, at=datetime(2026, 1, 31, tzinfo=UTC))  # January: neither month
    sent_rows(ses, 5, at=datetime(2026, 3, 11, tzinfo=UTC), status=Message.FAILED)
    return relay, ses, idle


def test_monthly_costs_per_backend_this_month_and_last(two_months):
    relay, ses, _idle = two_months

    figures = costs.monthly(NOW)

    def rows(month):
        return [(r["backend"].name, r["sent"], r["cost"]) for r in figures[month]["rows"]]

    assert figures["this"]["start"] == datetime(2026, 3, 1, tzinfo=UTC)
    assert figures["last"]["start"] == datetime(2026, 2, 1, tzinfo=UTC)
    assert rows("this") == [("Relay", 3, Decimal("4.5000")), ("SES", 2000, Decimal("0.2000"))]
    assert rows("last") == [("Relay", 2, Decimal("3.0000")), ("SES", 0, Decimal("0.0000"))]
    assert (figures["this"]["sent"], figures["this"]["cost"]) == (2003, Decimal("4.7000"))
    assert (figures["last"]["sent"], figures["last"]["cost"]) == (2, Decimal("3.0000"))


def test_months_follow_the_sites_time_zone(two_months, settings):
    settings.TIME_ZONE = "America/New_York"  # March 1st 00:00 UTC is still February there

    figures = costs.monthly(NOW)

    assert [(r["backend"].name, r["sent"]) for r in figures["last"]["rows"]] == [("Relay", 5), ("SES", 0)]


def test_counts_are_cached_and_prices_apply_at_once(two_months):
    relay, _ses, _idle = two_months
    costs.monthly(NOW)
    sent_rows(relay, 10, at=NOW)
    Backend.objects.filter(pk=relay.pk).update(price_per_thousand=Decimal("1000"))

    figures = costs.monthly(NOW)

    assert [(r["sent"], r["cost"]) for r in figures["this"]["rows"]][0] == (3, Decimal("3.0000"))


def test_the_overview_shows_the_monthly_costs(victor_client, two_months, settings):
    now = timezone.now()
    relay, ses, _idle = two_months
    sent_rows(ses, 1000, at=now)

    response = victor_client.get(reverse("home"))
    text = " ".join(response.text.split())

    this_month = f"{timezone.localtime(now):%B %Y}"
    assert f'<th scope="col">{this_month}</th>' in text
    assert '<td>SES</td> <td>0.1000</td> <td>0.10 <span class="hint">(1000 sent)</span></td>' in text
    assert "<td>Idle</td>" not in text and "<td>Relay</td>" not in text  # nothing sent in either month


def test_the_overview_says_when_nothing_was_sent(victor_client, relay):
    response = victor_client.get(reverse("home"))

    assert "Costs appear here once mail goes out, at each backend's price per 1,000." in response.text


def test_mallory_does_not_see_costs(mallory_client, two_months):
    assert mallory_client.get(reverse("home")).status_code == 403


# --- The indexes ----------------------------------------------------------------------------------------


def plan(queryset):
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a handful of rows: show which index it can use
        sql, params = queryset.query.sql_with_params()
        cursor.execute("EXPLAIN " + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def test_the_monthly_and_quota_counts_use_the_sent_index(two_months):
    relay, ses, _idle = two_months
    month = Message.objects.filter(backend_id__in=[relay.pk, ses.pk], status=Message.SENT,
                                   sent_at__gte=NOW - timedelta(days=30), sent_at__lt=NOW)

    sent_rows(relay, 4, at=NOW - timedelta(hours=1))

    assert "message_backend_sent" in plan(month.values("backend_id"))
    assert dashboard_services.sends_in_window([relay, ses], now=NOW) == {relay.pk: 4, ses.pk: 0}


def test_a_backends_recent_errors_use_the_trouble_index(relay):
    recent = Message.objects.filter(backend=relay, status__in=(Message.RETRY, Message.FAILED)).order_by("-updated_at")

    assert "message_backend_trouble" in plan(recent.values("pk")[:5])
