"""The overview page's campaigns sections: sending against quotas, bounce and complaint rates against the
mailbox providers' thresholds, recent broadcasts with their rates, unknown messages."""

from datetime import timedelta

from django.core.cache import cache
from django.db.models import Sum
from django.utils import timezone

from autoresponder.charts import level

from . import dashboard_services as figures
from . import stats
from .costs import overview_section as cost_sections
from .hooks_overview import dashboard_sections as hook_sections
from .sunset import dashboard_sections as sunset_sections
from .models import Backend, Broadcast, StatsBucket

RECENT_BROADCASTS = 5
RATE_DAYS = 30
RATES_CACHE_SECONDS = 60
# Gmail's and Yahoo's bulk-sender rules: keep spam complaints under 0.1 % and never reach
# 0.3 %, where they start refusing mail. Hard bounces: ESPs review an account at 5 %
# (Amazon SES) and advise staying under 2 %.
COMPLAINT_WARN, COMPLAINT_DANGER = 0.001, 0.003
BOUNCE_WARN, BOUNCE_DANGER = 0.02, 0.05


def _percent(rate, digits=2):
    return "—" if rate is None else f"{rate * 100:.{digits}f} %"


def deliverability(now=None):
    """Hard-bounce and complaint rates over the last RATE_DAYS days, from the hourly rollups."""
    since = (now or timezone.now()) - timedelta(days=RATE_DAYS)
    sums = StatsBucket.objects.filter(hour__gte=since).aggregate(
        sent=Sum("sent"), bounced=Sum("bounced"), complained=Sum("complained"))
    sent = sums["sent"] or 0
    bounce = (sums["bounced"] or 0) / sent if sent else None
    complaint = (sums["complained"] or 0) / sent if sent else None
    return {
        "days": RATE_DAYS, "sent": sent, "bounced": sums["bounced"] or 0, "complained": sums["complained"] or 0,
        "bounce": _percent(bounce), "bounce_level": level(bounce, warn=BOUNCE_WARN, danger=BOUNCE_DANGER),
        "complaint": _percent(complaint),
        "complaint_level": level(complaint, warn=COMPLAINT_WARN, danger=COMPLAINT_DANGER),
        "bounce_limits": (_percent(BOUNCE_WARN, 0), _percent(BOUNCE_DANGER, 0)),
        "complaint_limits": (_percent(COMPLAINT_WARN, 1), _percent(COMPLAINT_DANGER, 1)),
    }


def _with_rates(broadcast):
    rates = stats.broadcast_stats(broadcast)["rates"]
    broadcast.rates = {name: _percent(rates[name], 1) for name in ("open", "click", "bounce", "complaint")}
    broadcast.complaint_level = level(rates["complaint"], warn=COMPLAINT_WARN, danger=COMPLAINT_DANGER)
    return broadcast


def dashboard_sections(request):
    backend_list = list(Backend.objects.filter(is_active=True))
    used = figures.sends_in_window(backend_list)
    for backend in backend_list:
        backend.used = used.get(backend.pk, 0)
        backend.quota_percent = figures.quota_percent(backend.used, backend.window_limit)
        backend.window_label = figures.window_label(backend.window_seconds)
    recent = [_with_rates(b) for b in
              Broadcast.objects.exclude(status=Broadcast.DRAFT).order_by("-created_at", "-id")[:RECENT_BROADCASTS]]
    # The counters, not a COUNT over the ledger: a few rows however many messages were sent.
    unknown = Broadcast.objects.aggregate(n=Sum("unknown_count"))["n"] or 0
    rates = cache.get("campaigns:overview:rates")
    if rates is None:
        rates = deliverability()
        cache.set("campaigns:overview:rates", rates, RATES_CACHE_SECONDS)
    data = {"backends": backend_list, "broadcasts": recent, "unknown": unknown, "rates": rates}
    return [*hook_sections(request), *sunset_sections(request), {"template": "campaigns/_overview.html", "data": data}, *cost_sections(request)]
