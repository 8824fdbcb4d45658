"""
Dashboard pages for broadcasts: the list, the composer with its live preview,
recipients count and cost, test sends, the send/schedule step, the progress view
with pause/resume/cancel, and the report. Every state change calls
campaigns.broadcasts, whose conditional UPDATEs make a double click send once.
"""

from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required
from lists.models import MailingList, Segment

from . import broadcasts as service
from . import costs
from . import dashboard_services as figures
from .forms import STARTER_BODY, BroadcastForm, ScheduleForm
from .models import Backend, Broadcast, SenderIdentity, Template
from .views import confirm_delete
from .views_preview import (
    content_from_post, presend_context, presend_partial, preview_context, preview_partial, test_send,
)

PAGE_SIZE = 50
# How often the progress partial asks again (seconds), by status; others stop polling.
POLL_EVERY = {Broadcast.SENDING: 2, Broadcast.SCHEDULED: 15}
CONTENT_FIELDS = ("subject", "body", "body_format", "text_body", "layout")


def _context(request, **extra):
    return {"can_edit": has_role(request.user, "editor"), **extra}


def _broadcast(pk):
    return get_object_or_404(Broadcast.objects.select_related("sender", "layout", "segment", "backend"), pk=pk)


@role_required("viewer")
def broadcast_index(request):
    page = Paginator(Broadcast.objects.select_related("sender"), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "campaigns/broadcasts/index.html", _context(request, page=page))


# --- Composer -------------------------------------------------------------------------------


def _initial_from_template(request):
    template_id = request.GET.get("template", "")
    template = Template.objects.filter(pk=template_id).first() if template_id.isdigit() else None
    if template is None:
        return {"body": STARTER_BODY}, None
    initial = {name: getattr(template, name) for name in CONTENT_FIELDS}
    return {**initial, "name": template.name}, template


@role_required("editor")
@require_http_methods(["GET", "POST"])
def broadcast_create(request):
    initial, template = _initial_from_template(request)
    form = BroadcastForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        fields = dict(form.cleaned_data)
        broadcast = service.create(**fields, created_by=request.user)
        messages.success(request, "Draft saved. Check the preview, send a test, then send it or schedule it.")
        return redirect("campaigns:broadcast_detail", pk=broadcast.pk)
    return _composer(request, form, None, template)


@role_required("editor")
@require_http_methods(["GET", "POST"])
def broadcast_edit(request, pk):
    broadcast = _broadcast(pk)
    if broadcast.status != Broadcast.DRAFT:
        messages.error(request, _not_editable(broadcast))
        return redirect("campaigns:broadcast_detail", pk=pk)
    initial, template = _initial_from_template(request)
    if request.method == "POST":
        return _save_draft(request, pk)
    initial = initial if template else {}
    return _composer(request, BroadcastForm(instance=broadcast, initial=initial), broadcast, template)


def _save_draft(request, pk):
    # The row lock keeps a "send" clicked in another tab from starting it half-edited.
    with transaction.atomic():
        broadcast = Broadcast.objects.select_for_update().filter(pk=pk, status=Broadcast.DRAFT).first()
        if broadcast is None:
            messages.error(request, _not_editable(_broadcast(pk)))
            return redirect("campaigns:broadcast_detail", pk=pk)
        form = BroadcastForm(request.POST, instance=broadcast)
        if form.is_valid():
            form.save()
            messages.success(request, "Changes saved.")
            return redirect("campaigns:broadcast_detail", pk=pk)
    return _composer(request, form, broadcast, None)


def _not_editable(broadcast):
    if broadcast.status == Broadcast.SCHEDULED:
        return "This broadcast is scheduled. Move it back to draft (Unschedule) to edit it."
    return f"This broadcast is {broadcast.get_status_display().lower()} and can no longer be edited."


def _composer(request, form, broadcast, template):
    return render(request, "campaigns/broadcasts/compose.html", _context(
        request, form=form, broadcast=broadcast, template=template,
        templates=Template.objects.only("pk", "name"), has_senders=SenderIdentity.objects.exists(),
        can_manage=has_role(request.user, "admin"),
    ))


def _draft_from_post(post):
    """The composer's unsaved fields as a broadcast-shaped draft (see dashboard_services.draft)."""
    def one(model, name):
        value = post.get(name, "")
        return model.objects.filter(pk=value).first() if value.isdigit() else None

    list_ids = [value for value in post.getlist("lists") if value.isdigit()]
    return figures.draft(
        sender=one(SenderIdentity, "sender"), lists=MailingList.objects.filter(pk__in=list_ids),
        segment=one(Segment, "segment"), backend=one(Backend, "backend"), **content_from_post(post),
    )


@role_required("editor")
@require_POST
def compose_preview(request):
    """Live preview of the composer's unsaved fields (htmx, debounced)."""
    return preview_partial(request, _draft_from_post(request.POST))


@role_required("editor")
@require_POST
def compose_test(request):
    draft = _draft_from_post(request.POST)
    if draft.sender is figures.SAMPLE_SENDER:
        from .views_templates import test_send_refused

        return test_send_refused(request, reverse("campaigns:broadcast_index"))
    return test_send(request, draft, back_url=reverse("campaigns:broadcast_index"))


@role_required("editor")
@require_POST
def compose_presend(request):
    """The pre-send check of the composer's unsaved fields (htmx)."""
    return presend_partial(request, _draft_from_post(request.POST))


@role_required("editor")
@require_POST
def compose_count(request):
    """Recipients and cost for the composer's current lists, segment and backend."""
    draft = _draft_from_post(request.POST)
    if not draft.lists.exists() and draft.segment is None:
        return render(request, "campaigns/broadcasts/_count.html", {"needs_target": True})
    return render(request, "campaigns/broadcasts/_count.html", _count_context(draft))


def _count_context(broadcast, *, fresh=False):
    counted = service.counted_recipients(broadcast, fresh=fresh)
    recipients = counted["count"]
    return {"recipients": recipients, "counted_at": counted["counted_at"],
            "cost": service.estimate_cost(broadcast, recipients), "backend": service.chosen_backend(broadcast)}


# --- One broadcast ------------------------------------------------------------------------------


def _progress_context(request, broadcast):
    progress = service.progress(broadcast)
    status = progress["status"]
    return _context(request, broadcast=broadcast, progress=progress, poll=POLL_EVERY.get(status),
                    can_cancel=status in (Broadcast.SCHEDULED, Broadcast.SENDING, Broadcast.PAUSED))


@role_required("viewer")
def broadcast_detail(request, pk):
    broadcast = _broadcast(pk)
    context = _progress_context(request, broadcast)
    context["lists"] = broadcast.lists.order_by("name")
    if broadcast.status != Broadcast.DRAFT:
        context["bounced"] = figures.bounced_count(broadcast)
        context["cost"] = costs.actual(broadcast)
    context.update(preview_context(request, broadcast))
    return render(request, "campaigns/broadcasts/detail.html", context)


@role_required("viewer")
def broadcast_progress(request, pk):
    """The progress partial, polled by htmx while the broadcast sends."""
    broadcast = _broadcast(pk)
    return render(request, "campaigns/broadcasts/_progress.html", _progress_context(request, broadcast))


@role_required("viewer")
def broadcast_preview(request, pk):
    return preview_partial(request, _broadcast(pk))


@role_required("editor")
@require_POST
def broadcast_test(request, pk):
    return test_send(request, _broadcast(pk), back_url=reverse("campaigns:broadcast_detail", args=[pk]))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def broadcast_send(request, pk):
    """GET: the confirmation step (problems, schedule; recipients and cost load after). POST: send now."""
    broadcast = _broadcast(pk)
    if request.method == "POST":
        return _act(request, broadcast, service.send_now, "Sending started. This page shows the progress.",
                    "This broadcast was already started; it is sent once.")
    if broadcast.status not in (Broadcast.DRAFT, Broadcast.SCHEDULED):
        return redirect("campaigns:broadcast_detail", pk=pk)
    context = _send_context(request, broadcast, ScheduleForm(initial=_schedule_initial(broadcast)))
    return render(request, "campaigns/broadcasts/send.html", context)


def _send_context(request, broadcast, schedule_form):
    """The send step: the pre-send check and what blocks sending. Recipients and cost are not
    here: counting takes seconds at a million, so the page loads them (broadcast_count)."""
    checked = presend_context(broadcast)
    return _context(request, broadcast=broadcast, problems=service.problems(broadcast, checked["presend"]),
                    schedule_form=schedule_form, backend=service.chosen_backend(broadcast), **checked)


@role_required("editor")
def broadcast_count(request, pk):
    """The send step's recipients and cost (htmx, after the page); `fresh=1` counts again."""
    broadcast = _broadcast(pk)
    if not broadcast.lists.exists() and not broadcast.segment_id:
        return render(request, "campaigns/broadcasts/_send_count.html", {"broadcast": broadcast, "needs_target": True})
    context = _count_context(broadcast, fresh=request.GET.get("fresh") == "1")
    return render(request, "campaigns/broadcasts/_send_count.html", {"broadcast": broadcast, **context})


def _schedule_initial(broadcast):
    return {"scheduled_at": broadcast.scheduled_at, "in_subscriber_time_zone": broadcast.in_subscriber_time_zone}


def _act(request, broadcast, action, done, already, **kwargs):
    """Run a broadcast service; say what happened, including "someone did it already"."""
    try:
        moved = action(broadcast, **kwargs)
    except service.BroadcastError as exc:
        messages.error(request, str(exc))
        return redirect("campaigns:broadcast_detail", pk=broadcast.pk)
    (messages.success if moved else messages.info)(request, done if moved else already)
    return redirect("campaigns:broadcast_detail", pk=broadcast.pk)


@role_required("editor")
@require_POST
def broadcast_schedule(request, pk):
    broadcast = _broadcast(pk)
    form = ScheduleForm(request.POST)
    if not form.is_valid():
        return render(request, "campaigns/broadcasts/send.html", _send_context(request, broadcast, form), status=400)
    when = form.cleaned_data["scheduled_at"]
    return _act(request, broadcast, service.schedule, f"Scheduled for {when:%Y-%m-%d %H:%M}.",
                "This broadcast is no longer a draft; it was not scheduled again.", when=when,
                in_subscriber_time_zone=form.cleaned_data["in_subscriber_time_zone"])


def _status_action(action, done, already):
    @role_required("editor")
    @require_POST
    def view(request, pk):
        return _act(request, _broadcast(pk), action, done, already)

    view.__name__ = f"broadcast_{action.__name__}"
    return view


broadcast_unschedule = _status_action(
    service.unschedule, "Back to draft: edit it, then send or schedule it again.", "It was not scheduled.")
broadcast_pause = _status_action(
    service.pause, "Paused. Messages in flight finish; the rest wait until you resume.", "It was not sending.")
broadcast_resume = _status_action(service.resume, "Sending again.", "It was not paused.")
broadcast_cancel = _status_action(
    service.cancel, "Cancelled. Messages not yet sent will not be sent.", "It had already finished or was cancelled.")


@role_required("editor")
@require_http_methods(["GET", "POST"])
def broadcast_delete(request, pk):
    broadcast = _broadcast(pk)
    if broadcast.status != Broadcast.DRAFT:
        messages.error(request, "Only drafts can be deleted; cancel a broadcast to stop it.")
        return redirect("campaigns:broadcast_detail", pk=pk)
    return confirm_delete(
        request, what=f"the draft “{broadcast.name}”", warning="The draft and its content go. Nothing was sent.",
        cancel_url=reverse("campaigns:broadcast_detail", args=[pk]), done_url=reverse("campaigns:broadcast_index"),
        # only while still a draft: "send" may have been clicked in another tab meanwhile
        delete=lambda: Broadcast.objects.filter(pk=pk, status=Broadcast.DRAFT).delete(),
        done_message=f"Draft “{broadcast.name}” deleted.",
    )
