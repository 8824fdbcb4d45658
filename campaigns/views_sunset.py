"""
Settings › Sunset: the sunset policy (campaigns.sunset), its last count, and a
button that unsubscribes the inactive subscribers in the background with a
progress page. Everyone with a role reads; admins change the policy and run it.
"""

from django import forms
from django.contrib import messages
from django.db import transaction
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required

from . import sunset
from .models import SunsetPolicy

ADMINS_ONLY = "Only an admin can change the sunset policy or run it."


class SunsetPolicyForm(forms.ModelForm):
    class Meta:
        model = SunsetPolicy
        fields = ["mode", "months"]
        widgets = {"mode": forms.RadioSelect}
        labels = {"mode": "What to do with subscribers who stopped reading", "months": "Inactive for (months)"}
        help_texts = {"months": "Subscribers sent mail in this many months who opened and clicked none of it; "
                                "6 is common, 12 for a list mailed once a month or less."}


def _queue_count():
    from .tasks import count_sunset  # tasks call back into campaigns.sunset

    transaction.on_commit(count_sunset.delay)


@role_required("viewer")
@require_http_methods(["GET", "POST"])
def sunset_policy(request):
    policy = sunset.current()
    can_manage = has_role(request.user, "admin")
    if request.method == "POST":
        if not can_manage:
            messages.error(request, ADMINS_ONLY)
            return redirect("campaigns:sunset_policy")
        form = SunsetPolicyForm(request.POST, instance=policy)
        if form.is_valid():
            form.save()
            if policy.mode != SunsetPolicy.OFF:
                _queue_count()
            messages.success(request, _saved_message(policy))
            return redirect("campaigns:sunset_policy")
    else:
        form = SunsetPolicyForm(instance=policy)
    if not can_manage:
        for field in form.fields.values():
            field.disabled = True
    policy.refresh_from_db()
    return render(request, "campaigns/settings/sunset.html", {
        "form": form, "policy": policy, "can_manage": can_manage, "is_counted": sunset.is_counted(policy),
        "running_job": sunset.running_job(),
    })


def _saved_message(policy):
    if policy.mode == SunsetPolicy.OFF:
        return "Sunset policy saved: it is off."
    if policy.mode == SunsetPolicy.APPLY:
        return ("Sunset policy saved. Once a day, subscribers who have not opened or clicked in "
                f"{policy.months} months are unsubscribed; the count below shows how many that is now.")
    return "Sunset policy saved. The count below shows who would be unsubscribed; nothing changes until you press the button."


@role_required("admin")
@require_POST
def sunset_count(request):
    """Count again now (in the background; the page shows the result when it is there)."""
    _queue_count()
    messages.success(request, "Counting again in the background. Reload this page in a minute to see the result.")
    return redirect("campaigns:sunset_policy")


@role_required("admin")
@require_POST
def sunset_run(request):
    """Unsubscribe the inactive subscribers now, in the background."""
    policy = sunset.current()
    if policy.mode == SunsetPolicy.OFF:
        messages.error(request, "The sunset policy is off. Choose Suggest or Apply, save, then run it.")
        return redirect("campaigns:sunset_policy")
    job_id = sunset.start_job(request.user)
    return redirect("campaigns:sunset_job", job_id=job_id)


@role_required("viewer")
def sunset_job(request, job_id):
    """The progress of a sunset run (polled by htmx)."""
    job = sunset.get_job(job_id)
    if job is None:
        raise Http404("No such sunset run, or it finished more than a day ago.")
    template = "campaigns/settings/_sunset_progress.html" if request.htmx else "campaigns/settings/sunset_job.html"
    return render(request, template, {"job": job, "back": reverse("campaigns:sunset_policy")})
