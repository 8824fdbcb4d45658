"""The lists section of the overview page: totals and this week's movement (cached for a minute), and
subscribers over the last 90 days as a chart (lists.growth)."""

from datetime import date, timedelta

from django.core.cache import cache
from django.utils import timezone

from autoresponder.charts import BAR, LEFT, LINE, RIGHT, Series, chart_table, series_chart

from . import growth
from .models import MailingList, Subscriber, Subscription

CACHE_KEY = "lists:overview"
CACHE_SECONDS = 60


def figures(now=None):
    """Counts for the overview. Each one is served by an index (see the Subscription indexes)."""
    now = now or timezone.now()
    today = timezone.localtime(now).replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    subscriptions = Subscription.objects
    return {
        "lists": MailingList.objects.filter(is_archived=False).count(),
        "subscribers": Subscriber.objects.count(),
        "confirmed": subscriptions.filter(status=Subscription.CONFIRMED).count(),
        "signups_today": subscriptions.filter(created_at__gte=today).count(),
        "signups_week": subscriptions.filter(created_at__gte=week).count(),
        "unsubscribes_today": subscriptions.filter(unsubscribed_at__gte=today).count(),
        "unsubscribes_week": subscriptions.filter(unsubscribed_at__gte=week).count(),
    }


GROWTH_SERIES = (
    Series("subscribers", "Subscribers", LINE, LEFT),
    Series("new", "New subscribers", BAR, RIGHT),
    Series("unsubscribes", "Unsubscribes", BAR, RIGHT),
)


def growth_chart(days=growth.DAYS):
    """The overview's chart: subscribers at each day's end, new ones and unsubscribes per day."""
    rows = growth.daily_growth(days)
    return {"chart": series_chart(rows, x="day", series=GROWTH_SERIES, x_format=date.isoformat),
            "table": chart_table(rows[::-1], x="day", series=GROWTH_SERIES, x_format=date.isoformat),
            "series": GROWTH_SERIES, "days": days, "today": rows[-1]}


def dashboard_sections(request):
    data = cache.get(CACHE_KEY)
    if data is None:
        data = figures()
        cache.set(CACHE_KEY, data, CACHE_SECONDS)
    return [{"template": "lists/_overview.html", "data": data},
            {"template": "lists/_growth.html", "data": growth_chart()}]
