"""The overview: subscribers over time (lists.growth), the chart's data and table, in the page and in a browser."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from autoresponder.charts import chart_table, level, series_chart
from lists import growth
from lists.models import Subscriber, Subscription
from lists.overview import GROWTH_SERIES
from tests.factories import MailingListFactory

pytestmark = pytest.mark.django_db


def _subscribers(count, *, days_ago, prefix):
    created = timezone.now() - timedelta(days=days_ago)
    made = Subscriber.objects.bulk_create(Subscriber(email=f"{prefix}{i}@example.org") for i in range(count))
    Subscriber.objects.filter(pk__in=[s.pk for s in made]).update(created_at=created)
    return made


def test_daily_growth_counts_each_day_and_the_running_total():
    # given: 4 subscribers from before the window, 3 from 10 days ago, 2 from today; one unsubscribed 10 days ago
    _subscribers(4, days_ago=200, prefix="old")
    ten = _subscribers(3, days_ago=10, prefix="ten")
    _subscribers(2, days_ago=0, prefix="now")
    news = MailingListFactory()
    Subscription.objects.create(subscriber=ten[0], mailing_list=news, status=Subscription.UNSUBSCRIBED,
                                unsubscribed_at=timezone.now() - timedelta(days=10))

    # when
    series = growth.daily_growth(30)

    # then
    assert len(series) == 30 and series[-1]["day"] == timezone.localdate()
    by_day = {row["day"]: row for row in series}
    ten_days_ago = timezone.localdate() - timedelta(days=10)
    assert by_day[ten_days_ago] == {"day": ten_days_ago, "subscribers": 7, "new": 3, "unsubscribes": 1}
    assert series[0]["subscribers"] == 4
    assert series[-1] == {"day": timezone.localdate(), "subscribers": 9, "new": 2, "unsubscribes": 0}


def test_today_is_read_live_while_finished_days_come_from_the_cache():
    growth.daily_growth(7)  # fills the cache for the finished days
    _subscribers(1, days_ago=3, prefix="late")  # a backdated row the cached past does not see
    _subscribers(2, days_ago=0, prefix="fresh")

    series = growth.daily_growth(7)

    assert [row["new"] for row in series] == [0, 0, 0, 0, 0, 0, 2]


def test_series_chart_and_table_carry_the_same_figures():
    rows = [{"day": "2026-01-01", "subscribers": 5, "new": 5, "unsubscribes": 0},
            {"day": "2026-01-02", "subscribers": 7, "new": 2, "unsubscribes": None}]

    chart = series_chart(rows, x="day", series=GROWTH_SERIES)

    assert chart == {"labels": ["2026-01-01", "2026-01-02"], "datasets": [
        {"label": "Subscribers", "kind": "line", "axis": "y", "data": [5, 7]},
        {"label": "New subscribers", "kind": "bar", "axis": "y1", "data": [5, 2]},
        {"label": "Unsubscribes", "kind": "bar", "axis": "y1", "data": [0, 0]},
    ]}
    assert chart_table(rows, x="day", series=GROWTH_SERIES) == [["2026-01-01", 5, 5, 0], ["2026-01-02", 7, 2, 0]]


@pytest.mark.parametrize("rate, expected", [
    (None, None), (0, "ok"), (0.00099, "ok"), (0.001, "warn"), (0.0029, "warn"), (0.003, "danger"), (0.02, "danger"),
])
def test_complaint_rate_levels(rate, expected):
    assert level(rate, warn=0.001, danger=0.003) == expected


def test_the_overview_carries_the_chart_as_json_and_as_a_table(victor_client):
    _subscribers(3, days_ago=1, prefix="y")

    response = victor_client.get("/")

    html = response.content.decode()
    assert '<canvas data-chart="growth-chart"' in html
    assert '<script id="growth-chart" type="application/json">' in html
    start = html.index('<script id="growth-chart" type="application/json">') + len('<script id="growth-chart" type="application/json">')
    data = json.loads(html[start:html.index("</script>", start)])
    assert len(data["labels"]) == 90 and data["datasets"][0]["data"][-2:] == [3, 3]
    yesterday = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert f'<th scope="row">{yesterday}</th><td>3</td><td>3</td><td>0</td>' in html
    assert "vendor/chart-4.6.1.umd.min.js" in html and "js/charts.js" in html


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_chart_draws_in_a_browser_under_the_csp(page, live_server, victor):
    from tests.browser import sign_in
    from tests.conftest import PASSWORD

    _subscribers(5, days_ago=2, prefix="z")
    sign_in(page, live_server, "victor", PASSWORD)

    page.wait_for_function("document.querySelector('canvas[data-chart]').chart !== undefined")
    assert page.evaluate("document.querySelector('canvas[data-chart]').chart.data.datasets.length") == 3
    assert page.evaluate("document.querySelector('canvas[data-chart]').chart.data.datasets[0].data.at(-3)") == 5


# --- Bounce and complaint rates (campaigns.overview, from the hourly rollups) ----------------------


def _sent(broadcast, *, sent, bounced=0, complained=0, hours_ago=1):
    from campaigns.models import StatsBucket

    hour = (timezone.now() - timedelta(hours=hours_ago)).replace(minute=0, second=0, microsecond=0)
    StatsBucket.objects.create(scope="broadcast", scope_id=broadcast.pk, hour=hour, sent=sent, bounced=bounced,
                               complained=complained)


@pytest.fixture
def sent_broadcast():
    from tests.sending_factories import BroadcastFactory

    return BroadcastFactory(name="Spring", status="sent", recipients_count=10_000, sent_count=10_000)


def test_rates_below_the_thresholds_are_fine(victor_client, sent_broadcast):
    _sent(sent_broadcast, sent=10_000, bounced=100, complained=5)

    html = victor_client.get("/").content.decode()

    assert "0.05 %" in html and "1.00 %" in html
    assert "Spam complaints: 5 of 10000 sent. Keep under 0.1 %; at 0.3 % Gmail and Yahoo start refusing mail." in html
    assert html.count('<span class="badge ok">fine</span>') == 2
    assert "callout warn" not in html.split('id="overview-rates"')[1].split("</section>")[0]


def test_a_complaint_rate_over_a_tenth_of_a_percent_warns(victor_client, sent_broadcast):
    _sent(sent_broadcast, sent=10_000, complained=15)

    html = victor_client.get("/").content.decode()

    assert '<div class="stat rate warn" id="complaint-rate">' in html
    assert "0.15 % <span class=\"badge warn\">warning</span>" in html
    assert "Close to the mailbox providers' limits." in html


def test_a_complaint_rate_from_three_tenths_of_a_percent_is_danger(victor_client, sent_broadcast):
    _sent(sent_broadcast, sent=10_000, complained=30, bounced=600)

    html = victor_client.get("/").content.decode()

    assert '<div class="stat rate danger" id="complaint-rate">' in html
    assert '<div class="stat rate danger" id="bounce-rate">' in html
    assert "Mailbox providers are likely to block your mail." in html
    # the broadcast's own row flags it too
    assert '<span class="badge danger">0.3 %</span>' in html


def test_rates_count_only_the_last_thirty_days(victor_client, sent_broadcast):
    _sent(sent_broadcast, sent=1_000, complained=900, hours_ago=24 * 31)

    html = victor_client.get("/").content.decode()

    assert "Nothing sent in the last 30 days." in html
