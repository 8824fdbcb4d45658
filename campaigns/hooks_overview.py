"""The overview's notice to a hook's owner that their hook was disabled (campaigns/hooks.py disables it)."""

from autoresponder.roles import has_role

from .models import Hook


def dashboard_sections(request):
    if not has_role(request.user, "admin"):
        return []
    disabled = list(Hook.objects.filter(owner=request.user, is_active=False).exclude(disabled_at=None))
    return [{"template": "campaigns/hooks/_overview.html", "data": {"hooks": disabled}}] if disabled else []
