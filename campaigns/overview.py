"""The overview page's campaigns sections: sending against quotas, recent broadcasts, unknown messages."""

from django.db.models import Sum

from . import dashboard_services as figures
from .hooks_overview import dashboard_sections as hook_sections
from .models import Backend, Broadcast

RECENT_BROADCASTS = 5


def dashboard_sections(request):
    backend_list = list(Backend.objects.filter(is_active=True))
    used = figures.sends_in_window(backend_list)
    for backend in backend_list:
        backend.used = used.get(backend.pk, 0)
        backend.quota_percent = figures.quota_percent(backend.used, backend.window_limit)
        backend.window_label = figures.window_label(backend.window_seconds)
    recent = list(Broadcast.objects.exclude(status=Broadcast.DRAFT).order_by("-created_at", "-id")[:RECENT_BROADCASTS])
    # The counters, not a COUNT over the ledger: a few rows however many messages were sent.
    unknown = Broadcast.objects.aggregate(n=Sum("unknown_count"))["n"] or 0
    data = {"backends": backend_list, "broadcasts": recent, "unknown": unknown}
    return [*hook_sections(request), {"template": "campaigns/_overview.html", "data": data}]
