"""
Dashboard pages for sequences: the list, a sequence with its steps, figures and
funnel, the settings form, the step editor with a live preview for a chosen
subscriber and test sends, and the actions (switch on, pause, resume, move,
pause a step, delete, add or remove a subscriber). Every change calls
campaigns.sequences.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required
from lists.services import find_subscriber

from . import sequence_stats
from . import sequences as service
from .forms_sequences import EnrollForm, SequenceForm, StepForm
from .models import Enrollment, Sequence, SenderIdentity, Step, Template
from .step_sending import as_broadcast
from .views_preview import content_from_post, presend_partial, preview_partial, test_send

CONTENT_FIELDS = ("subject", "body", "body_format", "text_body", "layout")


def _context(request, **extra):
    return {"can_edit": has_role(request.user, "editor"), **extra}


def _sequence(pk):
    return get_object_or_404(
        Sequence.objects.select_related("mailing_list", "sender", "segment", "trigger_tag", "exit_tag", "backend"),
        pk=pk,
    )


def _step(pk, step_pk):
    return get_object_or_404(Step.objects.select_related("sequence__sender", "layout"), pk=step_pk, sequence_id=pk)


# --- The list and one sequence ---------------------------------------------------------------------


@role_required("viewer")
def sequence_index(request):
    sequences = list(Sequence.objects.select_related("mailing_list").annotate(step_count=Count("steps")))
    counts = (Enrollment.objects.values_list("sequence_id", "status").annotate(n=Count("pk")).order_by())
    by_sequence = {}
    for sequence_id, status, n in counts:
        by_sequence.setdefault(sequence_id, {})[status] = n
    for sequence in sequences:
        found = by_sequence.get(sequence.pk, {})
        sequence.active_count = found.get(Enrollment.ACTIVE, 0)
        sequence.finished_count = found.get(Enrollment.FINISHED, 0)
    return render(request, "campaigns/sequences/index.html", _context(request, sequences=sequences))


@role_required("viewer")
def sequence_detail(request, pk):
    sequence = _sequence(pk)
    figures = sequence_stats.figures(sequence)
    return render(request, "campaigns/sequences/detail.html", _context(
        request, sequence=sequence, figures=figures, problems=service.problems(sequence),
        enroll_form=EnrollForm(),
    ))


@role_required("viewer")
def sequence_figures(request, pk):
    """The figures card alone (htmx refresh)."""
    sequence = _sequence(pk)
    return render(request, "campaigns/sequences/_figures.html", {
        "sequence": sequence, "figures": sequence_stats.figures(sequence),
    })


# --- Settings ----------------------------------------------------------------------------------------


@role_required("editor")
@require_http_methods(["GET", "POST"])
def sequence_create(request):
    form = SequenceForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        sequence = service.create_sequence(**form.cleaned_data, created_by=request.user)
        messages.success(request, "Sequence saved. Add its first step: a welcome mail that goes at once.")
        return redirect("campaigns:step_create", pk=sequence.pk)
    return render(request, "campaigns/sequences/form.html", _context(
        request, form=form, sequence=None, has_senders=SenderIdentity.objects.exists(),
        can_manage=has_role(request.user, "admin"),
    ))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def sequence_edit(request, pk):
    sequence = _sequence(pk)
    form = SequenceForm(request.POST or None, instance=sequence)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Settings saved." + (" They apply from now on." if sequence.is_active else ""))
        return redirect("campaigns:sequence_detail", pk=pk)
    return render(request, "campaigns/sequences/form.html", _context(
        request, form=form, sequence=sequence, has_senders=True, can_manage=has_role(request.user, "admin"),
    ))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def sequence_delete(request, pk):
    sequence = _sequence(pk)
    if request.method == "POST":
        name = sequence.name
        service.delete_sequence(sequence)
        messages.success(request, f"Sequence “{name}” deleted. Mail it had queued was cancelled.")
        return redirect("campaigns:sequence_index")
    return render(request, "campaigns/sequences/delete.html", _context(
        request, sequence=sequence, figures=sequence_stats.figures(sequence),
    ))


# --- Switching on and off -------------------------------------------------------------------------------


@role_required("editor")
@require_POST
def sequence_enable(request, pk):
    sequence = _sequence(pk)
    existing = request.POST.get("enroll_existing")
    try:
        service.enable(sequence, enroll_existing=None if existing is None else existing == "1")
    except service.SequenceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "The sequence is running. New subscribers enter within a minute.")
    return redirect("campaigns:sequence_detail", pk=pk)


@role_required("editor")
@require_POST
def sequence_pause(request, pk):
    service.pause(_sequence(pk), reason=f"Paused by {request.user.get_username()}.")
    messages.success(request, "Paused: everyone waits where they are, queued mail too. Resume to go on.")
    return redirect("campaigns:sequence_detail", pk=pk)


@role_required("editor")
@require_POST
def sequence_resume(request, pk):
    sequence = _sequence(pk)
    try:
        service.resume(sequence)
    except service.SequenceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Running again. Steps due more than {sequence.skip_after_days} day(s) ago "
                                  "are skipped rather than sent late." if sequence.skip_after_days else "Running again.")
    return redirect("campaigns:sequence_detail", pk=pk)


# --- Subscribers by hand ------------------------------------------------------------------------------------


def _subscriber_from(request):
    form = EnrollForm(request.POST)
    if not form.is_valid():
        return None, "Enter a valid email address."
    subscriber = find_subscriber(form.cleaned_data["email"])
    if subscriber is None:
        return None, "No subscriber has this address. Add them to the list first."
    return subscriber, ""


@role_required("editor")
@require_POST
def sequence_enroll(request, pk):
    sequence = _sequence(pk)
    subscriber, problem = _subscriber_from(request)
    if subscriber is not None:
        try:
            _enrollment, entered = service.enroll(sequence, subscriber, source="admin")
        except service.SequenceError as exc:
            problem = str(exc)
        else:
            (messages.success if entered else messages.info)(request, (
                f"{subscriber.email} entered the sequence." if entered else
                f"{subscriber.email} is already in it; the re-entry setting keeps them where they are."))
    if problem:
        messages.error(request, problem)
    return redirect("campaigns:sequence_detail", pk=pk)


@role_required("editor")
@require_POST
def sequence_remove(request, pk):
    sequence = _sequence(pk)
    subscriber, problem = _subscriber_from(request)
    if subscriber is not None:
        if service.remove(sequence, subscriber):
            messages.success(request, f"{subscriber.email} left the sequence; their queued mail from it is cancelled.")
        else:
            problem = f"{subscriber.email} is not in this sequence right now."
    if problem:
        messages.error(request, problem)
    return redirect("campaigns:sequence_detail", pk=pk)


# --- The step editor ---------------------------------------------------------------------------------------


def _initial_from_template(request):
    template_id = request.GET.get("template", "")
    template = Template.objects.filter(pk=template_id).first() if template_id.isdigit() else None
    if template is None:
        return {}, None
    return {name: getattr(template, name) for name in CONTENT_FIELDS}, template


def _editor(request, sequence, form, step, template):
    return render(request, "campaigns/sequences/step_form.html", _context(
        request, sequence=sequence, form=form, step=step, template=template,
        templates=Template.objects.only("pk", "name"),
    ))


def _save_step(request, sequence, form, step):
    try:
        if step is None:
            step = service.add_step(sequence, **form.options())
        else:
            service.update_step(step, **form.options())
    except ValidationError as exc:
        form.add_error(None, exc)
        return None
    return step


@role_required("editor")
@require_http_methods(["GET", "POST"])
def step_create(request, pk):
    sequence = _sequence(pk)
    initial, template = _initial_from_template(request)
    if not sequence.steps.exists():
        initial.setdefault("delay_amount", 0)
    form = StepForm(request.POST or None, initial=initial, instance=Step(sequence=sequence))
    if request.method == "POST" and form.is_valid() and _save_step(request, sequence, form, None):
        messages.success(request, "Step added." + (" It applies to subscribers from their next step on."
                                                   if sequence.status != Sequence.DRAFT else ""))
        return redirect("campaigns:sequence_detail", pk=pk)
    return _editor(request, sequence, form, None, template)


@role_required("editor")
@require_http_methods(["GET", "POST"])
def step_edit(request, pk, step_pk):
    sequence, step = _sequence(pk), _step(pk, step_pk)
    initial, template = _initial_from_template(request)
    form = StepForm(request.POST or None, initial=initial, instance=step)
    if request.method == "POST" and form.is_valid() and _save_step(request, sequence, form, step):
        messages.success(request, "Step saved. A new delay applies to subscribers not yet waiting for this step.")
        return redirect("campaigns:sequence_detail", pk=pk)
    return _editor(request, sequence, form, step, template)


def _draft(request, pk):
    step_pk = request.POST.get("step", "")
    step = Step.objects.filter(pk=step_pk, sequence_id=pk).first() if step_pk.isdigit() else None
    return as_broadcast(step or Step(sequence=_sequence(pk)), **content_from_post(request.POST))


@role_required("editor")
@require_POST
def step_preview(request, pk):
    """Live preview of the step editor's unsaved fields for the chosen subscriber (htmx)."""
    return preview_partial(request, _draft(request, pk))


@role_required("editor")
@require_POST
def step_presend(request, pk):
    """The pre-send check of the step editor's unsaved fields (htmx)."""
    return presend_partial(request, _draft(request, pk))


@role_required("editor")
@require_POST
def step_test(request, pk):
    return test_send(request, _draft(request, pk), back_url=reverse("campaigns:sequence_detail", args=[pk]))


@role_required("editor")
@require_POST
def step_move(request, pk, step_pk):
    step = _step(pk, step_pk)
    offset = -1 if request.POST.get("direction") == "up" else 1
    service.move_step(step, step.position + offset)
    return redirect(reverse("campaigns:sequence_detail", args=[pk]) + "#steps")


@role_required("editor")
@require_POST
def step_toggle(request, pk, step_pk):
    step = service.set_step_active(_step(pk, step_pk), not _step(pk, step_pk).is_active)
    messages.success(request, f"Step {step.position} resumed." if step.is_active else
                     f"Step {step.position} paused: subscribers skip it and go on to the next step.")
    return redirect(reverse("campaigns:sequence_detail", args=[pk]) + "#steps")


@role_required("editor")
@require_http_methods(["GET", "POST"])
def step_delete(request, pk, step_pk):
    step = _step(pk, step_pk)
    if request.method == "POST":
        service.delete_step(step)
        messages.success(request, "Step deleted. Subscribers waiting for it go on to the next step.")
        return redirect("campaigns:sequence_detail", pk=pk)
    return render(request, "campaigns/sequences/step_delete.html", _context(request, sequence=step.sequence, step=step))
