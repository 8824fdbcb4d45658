"""
Dashboard pages for moving subscribers in and out: CSV import (upload → map
the columns → progress → summary), CSV exports, and segments. Editors import
and edit segments; viewers export and read segments.
"""

from pathlib import Path

from django.contrib import messages
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder import ratelimit
from autoresponder.roles import has_role, role_required

from . import counting, exporting, hygiene, importing, segments
from .forms_transfer import (
    TARGET_CHOICES,
    ImportForm,
    SegmentForm,
    condition_rows,
    conditions_from_post,
    field_choices,
    mapping_from_post,
    mapping_rows,
)
from .importing_csv import CSVFileError, auto_mapping, sniff, validate_mapping
from .models import ImportJob, MailingList, Segment, Tag
from .search import SUBSCRIBER_STATUSES, SUBSCRIPTION_STATUSES, search_subscribers

UPLOADS_PER_HOUR = 30
FLAGS = {f for f, _ in hygiene.FILTER_CHOICES}
EXPORTS_PER_HOUR = 30


# --- Import ------------------------------------------------------------------------------------


@role_required("editor")
@require_http_methods(["GET", "POST"])
def import_start(request, pk):
    """The upload form; a good file becomes a waiting ImportJob and the mapping page comes next."""
    mailing_list = get_object_or_404(MailingList, pk=pk)
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        job = _upload(request, form, mailing_list)
        if job is not None:
            return redirect("lists:import_detail", pk=job.pk)
    return render(request, "lists/import_start.html", {
        "mailing_list": mailing_list, "form": form, "max_mb": importing.max_bytes() // 1_000_000,
        "jobs": mailing_list.imports.select_related("created_by")[:10],
    })


def _upload(request, form, mailing_list):
    if not ratelimit.hit("import-upload", request.user.pk, limit=UPLOADS_PER_HOUR, window=3600):
        form.add_error(None, f"You uploaded {UPLOADS_PER_HOUR} files in the last hour. Wait a while and try again.")
        return None
    upload = form.cleaned_data["file"]
    try:
        name = importing.save_upload(upload)
    except CSVFileError as exc:
        form.add_error("file", str(exc))
        return None
    return ImportJob.objects.create(
        mailing_list=mailing_list, created_by=request.user, file=name, original_name=Path(upload.name).name[:255],
        mode=form.cleaned_data["mode"], confirmed=form.cleaned_data["confirmed"], tags=form.cleaned_data["tags"],
        check_mx=form.cleaned_data["check_mx"], skip_flagged=form.cleaned_data["skip_flagged"],
    )


@role_required("editor")
@require_http_methods(["GET", "POST"])
def import_detail(request, pk):
    """A waiting job without a mapping shows the mapping page; otherwise progress, then the summary."""
    job = get_object_or_404(ImportJob.objects.select_related("mailing_list", "created_by"), pk=pk)
    if job.status == ImportJob.PENDING and not job.mapping:
        return _mapping_step(request, job)
    template = "lists/import_progress.html" if request.htmx else "lists/import_detail.html"
    return render(request, template, {"job": job, "confirmations": importing.needs_confirmations(job)})


def _mapping_step(request, job):
    try:
        sniffed = sniff(importing.source_path(job))
    except (CSVFileError, OSError):
        job.status, job.failure = ImportJob.FAILED, "The uploaded file could not be read any more. Upload it again."
        job.save(update_fields=["status", "failure"])
        return redirect("lists:import_detail", pk=job.pk)
    mapping, errors = auto_mapping(sniffed.header), []
    if request.method == "POST" and "cancel" in request.POST:
        return _cancel(request, job)
    if request.method == "POST":
        mapping = mapping_from_post(request.POST, sniffed.header)
        errors = validate_mapping(sniffed.header, mapping)
        if not errors:
            job.mapping = mapping
            job.save(update_fields=["mapping"])
            importing.start(job)
            return redirect("lists:import_detail", pk=job.pk)
    return render(request, "lists/import_mapping.html", {
        "job": job, "sniffed": sniffed, "rows": mapping_rows(sniffed, mapping), "errors": errors,
        "targets": TARGET_CHOICES,
    })


def _cancel(request, job):
    importing.source_path(job).unlink(missing_ok=True)
    mailing_list = job.mailing_list
    job.delete()
    messages.success(request, "Import cancelled; the uploaded file is deleted.")
    return redirect("lists:import_start", pk=mailing_list.pk)


@role_required("editor")
def import_errors(request, pk):
    """The problem report: every skipped or invalid row with its line and reason."""
    job = get_object_or_404(ImportJob, pk=pk)
    path = importing.report_path(job)
    if path is None:
        raise Http404("This import has no problem report.")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=f"import-{job.pk}-problems.csv",
                        content_type="text/csv; charset=utf-8")


# --- Export ------------------------------------------------------------------------------------


def _csv_response(request, rows, name):
    if not ratelimit.hit("export", request.user.pk, limit=EXPORTS_PER_HOUR, window=3600):
        return HttpResponse(f"You started {EXPORTS_PER_HOUR} exports in the last hour. Wait a while and try again.",
                            status=429, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(exporting.csv_lines(rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}-{timezone.now():%Y-%m-%d}.csv"'
    return response


@role_required("viewer")
def export_list(request, pk):
    """Every member of the list, with the status of their subscription."""
    mailing_list = get_object_or_404(MailingList, pk=pk)
    name = f"list-{mailing_list.pk}-{slugify(mailing_list.name)[:50] or 'members'}"
    return _csv_response(request, exporting.subscription_rows(mailing_list), name)


@role_required("viewer")
def export_search(request):
    """The subscribers a search finds (the subscriber page's filters: q, list, status, tag, segment, flag)."""
    try:
        found = search_subscribers(**_search_filters(request.GET))
    except segments.SegmentError as exc:  # a segment whose list or field is gone
        return HttpResponse(f"This segment cannot be exported: {exc} Edit the segment first.", status=400,
                            content_type="text/plain; charset=utf-8")
    return _csv_response(request, exporting.subscriber_rows(found), "subscribers")


def _search_filters(params):
    """Filters from a query string; unknown values are dropped, never an error."""
    def number(name):
        value = params.get(name, "")
        return int(value) if value.isdigit() else None

    mailing_list = MailingList.objects.filter(pk=number("list")).first() if number("list") else None
    status = params.get("status")
    allowed = SUBSCRIPTION_STATUSES | (SUBSCRIBER_STATUSES if mailing_list is None else set())
    tag = params.get("tag", "").strip()
    return {
        "query": params.get("q", "").strip()[:200], "mailing_list": mailing_list,
        "status": status if status in allowed else None,
        "tag": Tag.objects.filter(Q(name=tag) | Q(pk=int(tag) if tag.isdigit() else None)).first() if tag else None,
        "segment": Segment.objects.filter(pk=number("segment")).first() if number("segment") else None,
        "flag": params.get("flag") if params.get("flag") in FLAGS else None,
    }


# --- Segments ------------------------------------------------------------------------------------


def _names():
    return {"lists": dict(MailingList.objects.values_list("pk", "name")),
            "tags": dict(Tag.objects.values_list("pk", "name"))}


@role_required("viewer")
def segment_index(request):
    names = _names()
    found = [{"segment": s, "conditions": [segments.describe(c, **names) for c in s.conditions]}
             for s in Segment.objects.all()]
    return render(request, "lists/segment_index.html", {"segments": found,
                                                        "can_edit": has_role(request.user, "editor")})


@role_required("editor")
@require_http_methods(["GET", "POST"])
def segment_create(request):
    return _segment_form(request, Segment())


@role_required("editor")
@require_http_methods(["GET", "POST"])
def segment_edit(request, pk):
    return _segment_form(request, get_object_or_404(Segment, pk=pk))


def _segment_form(request, segment):
    """The segment editor. An htmx POST with `preview` answers the live count; `add_row` adds a row."""
    if request.method == "GET":
        return _render_segment(request, segment, SegmentForm(instance=segment), segment.conditions, [])
    form = SegmentForm(request.POST, instance=segment)
    conditions = conditions_from_post(request.POST)
    match = request.POST.get("match", Segment.ALL)
    if "preview" in request.POST:
        return _preview(request, conditions, match)
    general, per_condition = segments.condition_errors(conditions, match)
    if "add_row" in request.POST:
        return _render_segment(request, segment, form, conditions, per_condition, blank=2)
    if form.is_valid() and not general and not any(per_condition):
        segment = form.save(commit=False)
        segment.conditions = segments.clean_conditions(conditions)
        segment.save()
        messages.success(request, f"Segment “{segment.name}” saved.")
        return redirect("lists:segment_index")
    return _render_segment(request, segment, form, conditions, per_condition, general=general)


def _render_segment(request, segment, form, conditions, per_condition, *, general=(), blank=1):
    return render(request, "lists/segment_form.html", {
        "segment": segment, "form": form, "general_errors": general,
        "rows": condition_rows(conditions, per_condition, blank=blank), "fields": field_choices(),
        "ops": [(name, field.kind, field.ops) for name, field in segments.FIELDS.items()],
        "kinds": {name: field.kind for name, field in segments.FIELDS.items()},
        "lists": MailingList.objects.order_by("name"), "tags": Tag.objects.all(),
    })


def _count(conditions, match):
    """{"count", "examples", "counted_at"} for valid conditions (kept a minute: lists.counting),
    {"errors"} otherwise. The editor asks for it with htmx once the page is shown."""
    errors = segments.validate_conditions(conditions, match)
    if errors:
        return {"errors": errors}
    return counting.segment_preview(conditions, match)


def _preview(request, conditions, match):
    return render(request, "lists/segment_preview.html", {"preview": _count(conditions, match)})


@role_required("editor")
@require_POST
def segment_delete(request, pk):
    segment = get_object_or_404(Segment, pk=pk)
    name = segment.name
    segment.delete()
    messages.success(request, f"Segment “{name}” deleted.")
    return redirect("lists:segment_index")
