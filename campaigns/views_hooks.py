"""
Dashboard pages for REST hooks (campaigns/hooks.py): subscribe a target to an
event, see each hook's deliveries with every attempt, enable or disable it,
replace its secret, retry a failed delivery, delete it. Admins only: a hook
sends subscriber data to another system.
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import role_required

from . import hooks
from .forms_hooks import HookForm
from .models import Hook, HookDelivery

DELIVERIES_PER_PAGE = 50


def _hook(pk):
    return get_object_or_404(Hook, pk=pk)


def _index(request, form, *, new_hook=None, status=200):
    context = {"hooks": Hook.objects.select_related("owner"), "form": form, "new_hook": new_hook,
               "events": hooks.EVENTS}
    template = "campaigns/hooks/_hooks.html" if request.htmx else "campaigns/hooks/index.html"
    return render(request, template, context, status=status)


@role_required("admin")
@require_http_methods(["GET", "POST"])
def hook_index(request):
    """GET: the hooks and the form. POST: subscribe; the answer shows the new hook's secret, once."""
    if request.method == "GET":
        return _index(request, HookForm())
    form = HookForm(request.POST)
    if not form.is_valid():
        return _index(request, form, status=400)
    try:
        hook = hooks.subscribe(owner=request.user, **form.cleaned_data)
    except hooks.HookError as exc:
        form.add_error(exc.field, exc.message)
        return _index(request, form, status=400)
    return _index(request, HookForm(), new_hook=hook)


@role_required("admin")
def hook_detail(request, pk):
    """The hook and its deliveries, newest first, paged by id (?before=<id>)."""
    hook = _hook(pk)
    deliveries = HookDelivery.objects.filter(hook=hook).order_by("-pk")
    before = request.GET.get("before", "")
    if before.isdigit():
        deliveries = deliveries.filter(pk__lt=int(before))
    page = list(deliveries[: DELIVERIES_PER_PAGE + 1])
    context = {"hook": hook, "deliveries": page[:DELIVERIES_PER_PAGE],
               "more": page[DELIVERIES_PER_PAGE - 1].pk if len(page) > DELIVERIES_PER_PAGE else None}
    template = "campaigns/hooks/_deliveries.html" if request.htmx else "campaigns/hooks/detail.html"
    return render(request, template, context)


@role_required("admin")
@require_POST
def hook_toggle(request, pk):
    hook = _hook(pk)
    if hook.is_active:
        hooks.disable(hook, f"Disabled by {request.user.get_username()} in the dashboard.")
        messages.success(request, "Hook disabled: new events are not queued for it until you enable it again.")
    else:
        hooks.enable(hook)
        messages.success(request, "Hook enabled: its waiting deliveries go out now.")
    return redirect("campaigns:hook_detail", pk=pk)


@role_required("admin")
@require_POST
def hook_secret(request, pk):
    """Replace the signing secret; the page shows the new one, once."""
    hook = hooks.rotate_secret(_hook(pk))
    messages.success(request, "New secret made. Update the receiver now: deliveries are signed with it from now on.")
    return render(request, "campaigns/hooks/detail.html", {
        "hook": hook, "new_secret": hook.secret, "more": None,
        "deliveries": HookDelivery.objects.filter(hook=hook).order_by("-pk")[:DELIVERIES_PER_PAGE],
    })


@role_required("admin")
@require_POST
def delivery_retry(request, pk):
    delivery = get_object_or_404(HookDelivery, pk=pk)
    hooks.retry_delivery(delivery)
    messages.success(request, "The delivery will be sent again in a moment.")
    return redirect("campaigns:hook_detail", pk=delivery.hook_id)


@role_required("admin")
@require_http_methods(["GET", "POST"])
def hook_delete(request, pk):
    hook = _hook(pk)
    if request.method == "POST":
        hooks.unsubscribe(hook)
        messages.success(request, f"Hook deleted: {hook.event} is no longer sent to {hook.target}.")
        return redirect("campaigns:hook_index")
    return render(request, "campaigns/confirm_delete.html", {
        "what": "this hook", "cancel_url": reverse("campaigns:hook_detail", args=[hook.pk]),
        "warning": f"{hook.event} will no longer be sent to {hook.target}, and its delivery log goes too.",
    })
