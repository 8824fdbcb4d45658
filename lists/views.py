"""
Dashboard pages for lists and subscribers. Viewers read, editors change; every
change is a POST that calls lists.services.

Lists may hold a million subscribers, so no page counts the whole table on each
view: per-list counts come from the (mailing_list, status) index, the list
index reads them from a short-lived cache, and the subscriber index pages with
a keyset cursor instead of page numbers.
"""

import json

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.db.models import Count, ProtectedError, Q
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.overview import subscriber_sections
from autoresponder.roles import has_role, role_required

from . import hygiene, services
from .forms import AddSubscriberForm, MailingListForm, SubscriberForm, TagForm, custom_fields
from .models import MailingList, Subscriber, Subscription, Suppression, Tag
from .public import embed_snippet

PAGE_SIZE = 50
COUNTS_CACHE_KEY = "lists:counts-by-list"
COUNTS_CACHE_SECONDS = 60
STATUSES = [s for s, _ in Subscription.STATUS_CHOICES]
FLAGS = [f for f, _ in hygiene.FILTER_CHOICES]


def _context(request, **extra):
    return {"can_edit": has_role(request.user, "editor"), **extra}


# --- Counts ---------------------------------------------------------------------------------


def list_counts(mailing_list, *, fresh=False):
    """{status: n} for one list, from an index-only scan of (mailing_list, status).

    Kept for COUNTS_CACHE_SECONDS like the list index's: on a list of 800,000 the scan
    takes ~130 ms (bench/dashboard.py), too much for every view of the list's page.
    """
    key = f"lists:counts:{mailing_list.pk}"
    counts = None if fresh else cache.get(key)
    if counts is None:
        rows = Subscription.objects.filter(mailing_list=mailing_list).values_list("status").annotate(n=Count("*"))
        counts = dict.fromkeys(STATUSES, 0) | dict(rows.order_by())
        counts["total"] = sum(counts[s] for s in STATUSES)
        cache.set(key, counts, COUNTS_CACHE_SECONDS)
    return counts


def counts_by_list():
    """{list id: {status: n}} for every list, cached for a minute: the list index is read far more than it changes."""
    cached = cache.get(COUNTS_CACHE_KEY)
    if cached is not None:
        return cached
    counts = {}
    rows = Subscription.objects.values_list("mailing_list", "status").annotate(n=Count("*")).order_by()
    for list_id, status, n in rows:
        counts.setdefault(list_id, dict.fromkeys(STATUSES, 0))[status] = n
    cache.set(COUNTS_CACHE_KEY, counts, COUNTS_CACHE_SECONDS)
    return counts


# --- Lists ----------------------------------------------------------------------------------


@role_required("viewer")
def list_index(request):
    lists = list(MailingList.objects.order_by("is_archived", "name"))
    counts = counts_by_list()
    for mailing_list in lists:
        mailing_list.counts = counts.get(mailing_list.pk, dict.fromkeys(STATUSES, 0))
    return render(request, "lists/list_index.html", _context(request, lists=lists))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def list_create(request):
    form = MailingListForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        mailing_list = form.save()
        messages.success(request, f"List “{mailing_list.name}” created. Share its signup page or embed the form.")
        return redirect("lists:list_detail", pk=mailing_list.pk)
    return render(request, "lists/list_form.html", _context(request, form=form, mailing_list=None))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def list_edit(request, pk):
    mailing_list = get_object_or_404(MailingList, pk=pk)
    form = MailingListForm(request.POST or None, instance=mailing_list)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Changes saved.")
        return redirect("lists:list_detail", pk=pk)
    return render(request, "lists/list_form.html", _context(request, form=form, mailing_list=mailing_list))


def _optional_url(name, pk):
    """A URL another part of the app may or may not provide yet (import/export), for list `pk`."""
    try:
        return reverse(name, args=[pk])
    except NoReverseMatch:
        pass
    try:
        return f"{reverse(name)}?list={pk}"
    except NoReverseMatch:
        return None


@role_required("viewer")
def list_detail(request, pk):
    mailing_list = get_object_or_404(MailingList, pk=pk)
    public_id = mailing_list.public_id
    return render(request, "lists/list_detail.html", _context(
        request,
        mailing_list=mailing_list,
        counts=list_counts(mailing_list),
        signup_url=settings.SITE_URL + reverse("lists:public_signup", args=[public_id]),
        json_url=settings.SITE_URL + reverse("lists:public_signup_json", args=[public_id]),
        snippet=embed_snippet(mailing_list),
        fields=custom_fields(mailing_list),
        import_url=_optional_url("lists:import_start", pk),
        export_url=_optional_url("lists:export_list", pk),
        add_form=AddSubscriberForm(),
    ))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def list_delete(request, pk):
    mailing_list = get_object_or_404(MailingList, pk=pk)
    if request.method == "POST":
        name = mailing_list.name
        try:
            mailing_list.delete()
        except ProtectedError as exc:  # e.g. a sequence sends to it (campaigns protects its lists)
            users = ", ".join(sorted(f"{type(o)._meta.verbose_name} “{o}”" for o in exc.protected_objects))
            messages.error(request, f"“{name}” is still used by {users}. Delete or change that first; "
                                    "the list and its subscribers stay as they are.")
            return redirect("lists:list_detail", pk=pk)
        cache.delete(COUNTS_CACHE_KEY)
        messages.success(request, f"List “{name}” deleted, with its subscriptions. Subscribers on other lists stay.")
        return redirect("lists:list_index")
    return render(request, "lists/list_delete.html",
                  _context(request, mailing_list=mailing_list, counts=list_counts(mailing_list, fresh=True)))


@role_required("editor")
@require_POST
def list_add_subscriber(request, pk):
    mailing_list = get_object_or_404(MailingList, pk=pk)
    form = AddSubscriberForm(request.POST)
    if not form.is_valid():
        for errors in form.errors.values():
            messages.error(request, " ".join(errors))
        return redirect("lists:list_detail", pk=pk)
    vouched = form.cleaned_data["confirmed"]
    try:
        subscription = services.subscribe(
            mailing_list, form.cleaned_data["email"], name=form.cleaned_data["name"], source=Subscription.ADMIN,
            form="dashboard", confirmed=True if vouched else None,
            consent_text=f"Added by {request.user.get_username()} in the dashboard"
            + (", who confirmed the subscriber agreed." if vouched else "."),
        )
    except services.InvalidSubscriber as exc:
        messages.error(request, exc.message)
        return redirect("lists:list_detail", pk=pk)
    cache.delete(f"lists:counts:{pk}")
    messages.success(request, f"{subscription.subscriber.email} is on the list ({subscription.get_status_display()}).")
    return redirect("lists:subscriber_detail", pk=subscription.subscriber_id)


# --- Subscribers ---------------------------------------------------------------------------


def _filters(request):
    """The index filters from the query string; malformed values are dropped, never an error.

    Returns (filters, matches_nobody): a list id or tag name that names nothing matches nobody.
    """
    params = request.GET
    list_id, tag_name = params.get("list", ""), params.get("tag", "").strip()
    mailing_list = MailingList.objects.filter(pk=list_id).first() if list_id.isdigit() else None
    tag = Tag.objects.filter(name=tag_name).first() if tag_name else None
    status = params.get("status") if params.get("status") in STATUSES else None
    flag = params.get("flag") if params.get("flag") in FLAGS else None
    filters = {"query": params.get("q", "").strip()[:200], "mailing_list": mailing_list, "status": status, "tag": tag,
               "flag": flag}
    return filters, (list_id.isdigit() and mailing_list is None) or (tag_name and tag is None)


def _page_after(queryset, after):
    """Keyset pagination on (created_at, id), newest first: no OFFSET, no COUNT(*)."""
    queryset = queryset.order_by("-created_at", "-id")
    pivot = Subscriber.objects.filter(pk=after).values_list("created_at", flat=True).first() if after else None
    if pivot is not None:
        queryset = queryset.filter(Q(created_at__lt=pivot) | Q(created_at=pivot, id__lt=after))
    rows = list(queryset.prefetch_related("subscriptions__mailing_list", "tags")[: PAGE_SIZE + 1])
    return rows[:PAGE_SIZE], (rows[PAGE_SIZE - 1].pk if len(rows) > PAGE_SIZE else None)


@role_required("viewer")
def subscriber_index(request):
    from .search import search_subscribers

    filters, matches_nobody = _filters(request)
    found = Subscriber.objects.none() if matches_nobody else search_subscribers(**filters)
    after = request.GET.get("after", "")
    subscribers, next_after = _page_after(found, int(after) if after.isdigit() else None)
    query = request.GET.copy()
    query.pop("after", None)
    context = _context(
        request, subscribers=subscribers, filters=filters, tag_name=request.GET.get("tag", ""),
        next_after=next_after, is_first_page=not after, base_query=query.urlencode(),
        lists=MailingList.objects.order_by("name"), statuses=Subscription.STATUS_CHOICES,
        flags=hygiene.FILTER_CHOICES,
    )
    template = "lists/_subscriber_table.html" if request.htmx else "lists/subscriber_index.html"
    return render(request, template, context)


def _subscriber(pk):
    return get_object_or_404(Subscriber, pk=pk)


def _is_erased(subscriber):
    return services.is_wiped_address(subscriber.email)


@role_required("viewer")
def subscriber_detail(request, pk):
    subscriber = _subscriber(pk)
    subscriptions = subscriber.subscriptions.select_related("mailing_list").order_by("mailing_list__name")
    return render(request, "lists/subscriber_detail.html", _context(
        request,
        subscriber=subscriber,
        subscriptions=subscriptions,
        tags=subscriber.tags.order_by("name"),
        tag_form=TagForm(),
        suppression=Suppression.objects.filter(email=subscriber.email.lower()).first(),
        is_erased=_is_erased(subscriber),
        attributes_json=json.dumps(subscriber.attributes, indent=2, ensure_ascii=False),
        sections=subscriber_sections(request, subscriber),
    ))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def subscriber_edit(request, pk):
    subscriber = _subscriber(pk)
    if _is_erased(subscriber):
        messages.error(request, "This subscriber was erased; there is nothing left to edit.")
        return redirect("lists:subscriber_detail", pk=pk)
    initial = {"email": subscriber.email, "name": subscriber.name, "time_zone": subscriber.time_zone,
               "attributes": json.dumps(subscriber.attributes, indent=2, ensure_ascii=False)}
    form = SubscriberForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.update_subscriber(subscriber, **form.cleaned_data)
        except services.InvalidSubscriber as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, "Changes saved.")
            return redirect("lists:subscriber_detail", pk=pk)
    return render(request, "lists/subscriber_form.html", _context(request, form=form, subscriber=subscriber))


@role_required("editor")
@require_POST
def subscriber_unsubscribe(request, pk):
    subscriber = _subscriber(pk)
    list_id = request.POST.get("list", "")
    mailing_list = get_object_or_404(MailingList, pk=list_id) if list_id else None
    changed = services.unsubscribe(subscriber, mailing_list, reason=f"By {request.user.get_username()} in the dashboard")
    where = f"from {mailing_list.name}" if mailing_list else f"from {changed} list(s)"
    messages.success(request, f"Unsubscribed {where}." if changed else "Nothing to change: already unsubscribed.")
    return redirect("lists:subscriber_detail", pk=pk)


def _tags_response(request, subscriber, form=None):
    if request.htmx:
        return render(request, "lists/_subscriber_tags.html", _context(
            request, subscriber=subscriber, tags=subscriber.tags.order_by("name"), tag_form=form or TagForm()))
    return redirect("lists:subscriber_detail", pk=subscriber.pk)


@role_required("editor")
@require_POST
def subscriber_tag(request, pk):
    subscriber = _subscriber(pk)
    form = TagForm(request.POST)
    if form.is_valid():
        services.tag(subscriber, *form.cleaned_data["tags"])
        if not request.htmx:
            messages.success(request, "Tags added.")
    elif not request.htmx:
        messages.error(request, " ".join(form.errors["tags"]))
    return _tags_response(request, subscriber, form if form.errors else None)


@role_required("editor")
@require_POST
def subscriber_untag(request, pk):
    subscriber = _subscriber(pk)
    services.untag(subscriber, request.POST.get("tag", ""))
    return _tags_response(request, subscriber)


@role_required("editor")
@require_POST
def subscriber_delete(request, pk):
    subscriber = _subscriber(pk)
    email = subscriber.email
    services.delete_subscriber(subscriber)
    messages.success(request, f"{email} deleted, with all their subscriptions.")
    return redirect("lists:subscriber_index")


@role_required("editor")
@require_POST
def subscriber_wipe(request, pk):
    subscriber = _subscriber(pk)
    if _is_erased(subscriber):
        messages.error(request, "This subscriber was already erased.")
        return redirect("lists:subscriber_detail", pk=pk)
    services.wipe_subscriber(subscriber)
    messages.success(request, "Personal data erased. The address cannot be imported again; only a new signup by its owner brings it back.")
    return redirect("lists:subscriber_detail", pk=pk)


@role_required("editor")
@require_POST
def subscriber_export(request, pk):
    """GDPR access request: a JSON download of everything held about the subscriber."""
    subscriber = _subscriber(pk)
    body = json.dumps(services.export_subscriber(subscriber), indent=2, ensure_ascii=False)
    response = HttpResponse(body, content_type="application/json; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="subscriber-{subscriber.pk}.json"'
    return response
