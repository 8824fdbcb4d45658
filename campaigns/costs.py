"""
What sending costs, at each backend's price per 1,000 messages (Backend.price_per_thousand).

- Before a broadcast goes: campaigns.broadcasts.estimate_cost (recipients × the chosen
  backend's price), shown in the composer and on the send step.
- After: the broadcast's actual cost, each sent message at the price of the backend that
  sent it (a failover can split a broadcast between backends), summed once when it
  finishes and stored on the broadcast, so no page counts its ledger again.
- Each month: every backend's sent messages in the month at its price today, on the
  overview. The messages are counted per backend and month through the
  `message_backend_sent` index (an index-range scan per backend) and the counts kept in
  the cache: a few minutes for this month, hours for the last one, which no longer moves.
  Prices are applied when shown, so a corrected price shows at once.
"""

from datetime import timedelta
from decimal import Decimal

from django.core.cache import cache
from django.db.models import Count, Sum
from django.utils import timezone

from .models import Backend, Broadcast, Message

STORED = Decimal("0.0001")  # Broadcast.cost's precision
THIS_MONTH_SECONDS = 300
PAST_MONTH_SECONDS = 6 * 3600


def of_messages(count, price_per_thousand):
    return (Decimal(price_per_thousand) * count / 1000).quantize(STORED)


# --- One broadcast ---------------------------------------------------------------------------------


def _sent_cost(broadcast_id):
    # SUM of each sent row's backend price: Σ messages × price, per backend, in one query.
    rows = Message.objects.filter(broadcast_id=broadcast_id, status=Message.SENT)
    total = rows.aggregate(total=Sum("backend__price_per_thousand"))["total"] or Decimal(0)
    return (total / 1000).quantize(STORED)


def record(broadcast_id):
    """Store the actual cost of a broadcast that just finished (campaigns.ledger.finish_if_done
    calls it in the transaction that marks it sent); returns it."""
    cost = _sent_cost(broadcast_id)
    Broadcast.objects.filter(pk=broadcast_id).update(cost=cost)
    return cost


def actual(broadcast):
    """The actual cost of a sent or cancelled broadcast; None while messages may still go.

    A broadcast cancelled while sending (or sent before costs were stored) has its cost
    summed and stored the first time it is asked for, once no batch is still sending.
    """
    if broadcast.cost is not None:
        return broadcast.cost
    if broadcast.status not in (Broadcast.SENT, Broadcast.CANCELLED):
        return None
    if Message.objects.filter(broadcast_id=broadcast.pk, status=Message.SENDING).exists():
        return None
    cost = _sent_cost(broadcast.pk)
    Broadcast.objects.filter(pk=broadcast.pk, status=broadcast.status, cost__isnull=True).update(cost=cost)
    broadcast.cost = cost
    return cost


# --- Each month ------------------------------------------------------------------------------------


def month_starts(now=None):
    """(last month's start, this month's start, next month's start), in the site's time zone."""
    local = timezone.localtime(now or timezone.now())
    this = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    last = (this - timedelta(days=1)).replace(day=1)
    following = (this + timedelta(days=32)).replace(day=1)
    return last, this, following


def sent_per_backend(start, end, *, cache_seconds):
    """{backend id: messages sent in [start, end)}, counted per backend on message_backend_sent."""
    key = f"campaigns:costs:sent:{start.isoformat()}:{end.isoformat()}"
    counts = cache.get(key)
    if counts is None:
        ids = list(Backend.objects.values_list("pk", flat=True))
        counts = dict(
            Message.objects.filter(backend_id__in=ids, status=Message.SENT, sent_at__gte=start, sent_at__lt=end)
            .values_list("backend_id").annotate(n=Count("pk")).order_by()
        )
        cache.set(key, counts, cache_seconds)
    return counts


def monthly(now=None):
    """This month's and last month's messages and cost per backend, with totals:
    {"this": month, "last": month}, each {"start", "rows": [{"backend", "sent", "cost"}],
    "sent", "cost"}. Backends that sent nothing in either month are left out."""
    last, this, following = month_starts(now)
    this_counts = sent_per_backend(this, following, cache_seconds=THIS_MONTH_SECONDS)
    last_counts = sent_per_backend(last, this, cache_seconds=PAST_MONTH_SECONDS)
    used = [b for b in Backend.objects.order_by("priority", "name") if this_counts.get(b.pk) or last_counts.get(b.pk)]
    return {"this": _month(this, used, this_counts), "last": _month(last, used, last_counts)}


def _month(start, backend_list, counts):
    rows = [{"backend": b, "sent": counts.get(b.pk, 0), "cost": of_messages(counts.get(b.pk, 0), b.price_per_thousand)}
            for b in backend_list]
    return {"start": start, "rows": rows, "sent": sum(r["sent"] for r in rows),
            "cost": sum((r["cost"] for r in rows), Decimal(0))}


def overview_section(request):
    """The overview's section: sending costs this month and last month, per backend."""
    figures = monthly()
    rows = [{"backend": this["backend"], "this": this, "last": last}
            for this, last in zip(figures["this"]["rows"], figures["last"]["rows"])]
    return [{"template": "campaigns/_costs_overview.html", "data": {**figures, "rows": rows}}]
