"""
Bulk actions on the subscriber index (editors): tag, untag, unsubscribe or delete
the ticked subscribers or everyone matching the filter. The first POST shows
what would happen, with the count; only the confirming POST changes anything
(lists.bulk_actions does the set-based work). Deleting a whole filter also asks
for the count to be typed, so a slip cannot empty the database. More than
bulk_jobs.INLINE_MAX subscribers run in the background, with a progress page.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from autoresponder.roles import role_required

from . import bulk_actions, bulk_jobs
from .forms_bulk import BulkActionForm

FILTER_FIELDS = ("q", "list", "status", "tag", "flag")


def _back_url(post):
    query = urlencode({k: post[k] for k in FILTER_FIELDS if post.get(k)})
    return reverse("lists:subscriber_index") + (f"?{query}" if query else "")


def _spec(request, form):
    """What the action does and to whom, as lists.bulk_actions and lists.bulk_jobs take it."""
    data = form.cleaned_data
    spec = {"action": data["action"], "tag_name": data.get("tag_name") or "",
            "from_list": data["from_list"].pk if data.get("from_list") else None,
            "reason": f"By {request.user.get_username()} in the dashboard (bulk)"}
    if data["scope"] == "selected":
        return {**spec, "ids": form.selected_ids}
    return {**spec, "filters": {k: request.POST[k] for k in FILTER_FIELDS if request.POST.get(k)}}


def _summary(data, count):
    return bulk_actions.describe(data["action"], count, tag_name=data.get("tag_name") or "",
                                 from_list=data.get("from_list"))


def _run_now(form, spec, subscribers):
    changed = bulk_actions.apply(spec["action"], subscribers, tag_name=spec["tag_name"], reason=spec["reason"],
                                 mailing_list=form.cleaned_data.get("from_list"))
    return bulk_actions.DONE[spec["action"]].format(n=changed, tag=spec["tag_name"])


def _needs_typed_count(data):
    return data["action"] == "delete" and data["scope"] == "filter"


@role_required("editor")
@require_POST
def subscriber_bulk(request):
    form = BulkActionForm(request.POST)
    back = _back_url(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect(back)
    data, spec = form.cleaned_data, _spec(request, form)
    subscribers = bulk_actions.subscribers_for(spec)
    count = subscribers.count()
    if count == 0:
        messages.error(request, "No subscriber matches, so nothing was changed.")
        return redirect(back)
    typed_ok = not _needs_typed_count(data) or data.get("typed_count") == count
    if not data["confirmed"] or not typed_ok:
        return render(request, "lists/subscriber_bulk.html", {
            "form": form, "count": count, "summary": _summary(data, count), "back": back,
            "needs_typed_count": _needs_typed_count(data), "typed_wrong": data["confirmed"] and not typed_ok,
            "filter_fields": spec.get("filters", {}), "in_background": count > bulk_jobs.INLINE_MAX,
        })
    if count > bulk_jobs.INLINE_MAX:
        job_id = bulk_jobs.start({**spec, "summary": _summary(data, count), "back": back}, total=count,
                                 user=request.user)
        return redirect("lists:subscriber_bulk_job", job_id=job_id)
    messages.success(request, _run_now(form, spec, subscribers))
    return redirect(back)


@role_required("editor")
def subscriber_bulk_job(request, job_id):
    """The progress of a bulk action running in the background (polled by htmx)."""
    job = bulk_jobs.get(job_id)
    if job is None:
        raise Http404("No such bulk action, or it finished more than a day ago.")
    if job["status"] == bulk_jobs.DONE:
        job["message"] = bulk_actions.DONE[job["action"]].format(n=job["changed"], tag=job.get("tag_name", ""))
    template = "lists/_bulk_progress.html" if request.htmx else "lists/bulk_job.html"
    return render(request, template, {"job": job})
