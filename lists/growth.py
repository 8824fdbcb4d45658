"""
Subscribers over time, day by day, for the overview's chart.

Three grouped queries, each served by an index: new subscribers per day
(Subscriber.created_at), unsubscribes per day (the partial index on
Subscription.unsubscribed_at) and the subscribers older than the window (an
index-only count on created_at). With a million subscribers the first and last
together read the whole created_at index once (~250 ms on 2 shared cores, see
bench/dashboard.py; one pass with a CASE per row was slower, ~400 ms), so the
finished days are kept for an hour: the past barely moves (only deletions lower
it), and today's figures are read live from the end of the index, which is cheap.

"Subscribers" counts the people on file at the end of each day who are still
on file now (a deleted subscriber leaves no trace to count).
"""

from datetime import datetime, time, timedelta

from django.core.cache import cache
from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from .models import Subscriber, Subscription

DAYS = 90
PAST_CACHE_SECONDS = 3600


def _start_of(day):
    return timezone.make_aware(datetime.combine(day, time.min))


def _per_day(queryset, field, start, end):
    rows = (queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end})
            .annotate(day=TruncDate(field, tzinfo=timezone.get_current_timezone()))
            .values_list("day").annotate(n=Count("*")).order_by())
    return dict(rows)


def _past(first_day, today):
    """{"before": subscribers before the window, "new": {day: n}, "gone": {day: n}} for finished days."""
    key = f"lists:growth:{first_day.isoformat()}:{today.isoformat()}"
    past = cache.get(key)
    if past is None:
        start, end = _start_of(first_day), _start_of(today)
        past = {
            "before": Subscriber.objects.filter(created_at__lt=start).count(),
            "new": _per_day(Subscriber.objects, "created_at", start, end),
            "gone": _per_day(Subscription.objects, "unsubscribed_at", start, end),
        }
        cache.set(key, past, PAST_CACHE_SECONDS)
    return past


def daily_growth(days=DAYS, *, now=None):
    """[{"day": date, "subscribers": n at the day's end, "new": n, "unsubscribes": n}], oldest first.

    The last entry is today, so far. Days follow the TIME_ZONE setting.
    """
    today = timezone.localdate(now or timezone.now())
    first_day = today - timedelta(days=days - 1)
    past = _past(first_day, today)
    start_today = _start_of(today)
    new_today = Subscriber.objects.filter(created_at__gte=start_today).count()
    gone_today = Subscription.objects.filter(unsubscribed_at__gte=start_today).count()
    series, total = [], past["before"]
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        new = new_today if day == today else past["new"].get(day, 0)
        total += new
        gone = gone_today if day == today else past["gone"].get(day, 0)
        series.append({"day": day, "subscribers": total, "new": new, "unsubscribes": gone})
    return series
