"""
Bulk actions on the subscriber index (editors): tag, untag, unsubscribe or delete
the ticked subscribers or everyone matching the filter. The first POST shows
what would happen, with the count; only the confirming POST changes anything
(lists.bulk_actions does the set-based work). Deleting a whole filter also asks
for the count to be typed, so a slip cannot empty the database.
"""

from urllib.parse import urlencode

from django.contrib import messages
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_POST

from autoresponder.roles import role_required

from . import bulk_actions
from .forms_bulk import BulkActionForm
from .models import Subscriber
from .search import search_subscribers
from .views import _filters

FILTER_FIELDS = ("q", "list", "status", "tag")


def _back_url(post):
    query = urlencode({k: post[k] for k in FILTER_FIELDS if post.get(k)})
    return reverse("lists:subscriber_index") + (f"?{query}" if query else "")


def _targets(request, form):
    if form.cleaned_data["scope"] == "selected":
        return Subscriber.objects.filter(pk__in=form.selected_ids)
    filters, matches_nobody = _filters(request, request.POST)
    return Subscriber.objects.none() if matches_nobody else search_subscribers(**filters)


def _summary(data, count):
    who = f"{count} subscriber{pluralize(count)}"
    where = f"“{data['from_list'].name}”" if data.get("from_list") else "every list"
    return {
        "tag": f"Add the tag “{data.get('tag_name')}” to {who}",
        "untag": f"Remove the tag “{data.get('tag_name')}” from {who}",
        "unsubscribe": f"Unsubscribe {who} from {where}",
        "delete": f"Delete {who}, with all their subscriptions",
    }[data["action"]]


def _run(request, data, subscribers):
    action = data["action"]
    if action == "tag":
        return f"Tagged {bulk_actions.tag_all(subscribers, data['tag_name'])} subscriber(s) with “{data['tag_name']}”."
    if action == "untag":
        return f"Removed “{data['tag_name']}” from {bulk_actions.untag_all(subscribers, data['tag_name'])} subscriber(s)."
    if action == "unsubscribe":
        changed = bulk_actions.unsubscribe_all(
            subscribers, data.get("from_list"), reason=f"By {request.user.get_username()} in the dashboard (bulk)")
        return f"Unsubscribed {changed} subscription(s)."
    return f"Deleted {bulk_actions.delete_all(subscribers)} subscriber(s)."


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
    data, subscribers = form.cleaned_data, _targets(request, form)
    count = subscribers.count()
    if count == 0:
        messages.error(request, "No subscriber matches, so nothing was changed.")
        return redirect(back)
    typed_ok = not _needs_typed_count(data) or data.get("typed_count") == count
    if not data["confirmed"] or not typed_ok:
        return render(request, "lists/subscriber_bulk.html", {
            "form": form, "count": count, "summary": _summary(data, count), "back": back,
            "needs_typed_count": _needs_typed_count(data), "typed_wrong": data["confirmed"] and not typed_ok,
            "filter_fields": {k: request.POST[k] for k in FILTER_FIELDS if request.POST.get(k)},
        })
    messages.success(request, _run(request, data, subscribers))
    return redirect(back)
