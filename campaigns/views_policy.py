"""
Settings › Bounces and complaints: the bounce policy (campaigns.policy), as a
form. Everyone with a role reads it; admins change it.
"""

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from autoresponder.roles import has_role, role_required

from . import events, policy
from .forms import field_groups
from .models import BouncePolicy

ADDRESS_FIELDS = ("hard_bounce_suppresses", "soft_bounce_limit", "soft_bounce_days", "complaint_unsubscribes",
                  "complaint_suppresses")
# campaigns.brakes: when a broadcast pauses itself.
BRAKE_FIELDS = ("brake_bounce_percent", "brake_complaint_percent", "brake_messages", "brake_min_messages",
                "policy_pause_after")


class BouncePolicyForm(forms.ModelForm):
    class Meta:
        model = BouncePolicy
        fields = ADDRESS_FIELDS + BRAKE_FIELDS
        labels = {
            "hard_bounce_suppresses": "Suppress after one hard bounce",
            "soft_bounce_limit": "Soft bounces before suppressing",
            "soft_bounce_days": "Counted over (days)",
            "complaint_unsubscribes": "A complaint unsubscribes from every list",
            "complaint_suppresses": "A complaint suppresses the address",
            "brake_messages": "Messages watched", "brake_min_messages": "Judged from (messages)",
            "brake_bounce_percent": "Pause above this hard-bounce rate (%)",
            "brake_complaint_percent": "Pause above this complaint rate (%)",
            "policy_pause_after": "Pause after this many policy refusals (5.7.x) in a row",
        }

    def groups(self):
        return field_groups(self, (("Addresses", ADDRESS_FIELDS), ("Automatic brakes", BRAKE_FIELDS)))


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def bounce_policy(request):
    current = policy.current()
    can_manage = has_role(request.user, "admin")
    if request.method == "POST" and not can_manage:
        messages.error(request, "Only an admin can change the bounce policy.")
        return redirect(reverse("campaigns:bounce_policy"))
    form = BouncePolicyForm(request.POST if request.method == "POST" else None, instance=current)
    saved = request.method == "POST" and form.is_valid()
    if saved:
        form.save()
        if not request.htmx:
            messages.success(request, SAVED)
            return redirect(reverse("campaigns:bounce_policy"))
    if not can_manage:
        for field in form.fields.values():
            field.disabled = True
    context = {"form": form, "can_manage": can_manage, "saved_message": SAVED if saved else ""}
    if request.htmx:
        return render(request, "campaigns/settings/_bounce_policy_form.html", context)
    return render(request, "campaigns/settings/bounce_policy.html", {**context, "pending_events": _pending()})


SAVED = "Bounce policy saved. It applies to the bounces and complaints that arrive from now on."


def _pending():
    """Opens and clicks waiting in the buffer: more than a few seconds' worth means the drain is not running."""
    try:
        return events.pending()
    except Exception:  # noqa: BLE001 - Redis down: the page still shows the policy
        return None
