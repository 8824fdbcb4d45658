"""
Dashboard pages for sending backends. Everyone with a role reads them (never the
secrets, which no page renders); admins add, edit, test, enable and delete.
"""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required

from . import backends as transports
from . import dashboard_services as figures
from .forms import KIND_FIELDS, BackendForm
from .models import Backend
from .views import confirm_delete

KIND_HINTS = {
    Backend.SMTP: "Your own mail server or any SMTP relay (Postfix, Amazon SES SMTP, Mailjet, …).",
    Backend.AMAZON_SES: "Amazon Simple Email Service through its API.",
    Backend.MANDRILL: "Mailchimp Transactional (Mandrill).",
    Backend.SENDGRID: "Twilio SendGrid.",
    Backend.POSTMARK: "Postmark, ideally its broadcast message stream.",
    Backend.MAILGUN: "Mailgun, US or EU region.",
    Backend.BREVO: "Brevo (formerly Sendinblue).",
    Backend.OUTBOX: "Keeps mail on this machine in the outbox; for trying things out.",
}


def _context(request, **extra):
    return {"can_manage": has_role(request.user, "admin"), **extra}


def _backend(pk):
    return get_object_or_404(Backend, pk=pk)


def _with_usage(backend_list):
    used = figures.sends_in_window(backend_list)
    for backend in backend_list:
        backend.used = used.get(backend.pk, 0)
        backend.quota_percent = figures.quota_percent(backend.used, backend.window_limit)
        backend.health = figures.health(backend)
        backend.window_label = figures.window_label(backend.window_seconds)
    return backend_list


@role_required("viewer")
def backend_index(request):
    backend_list = _with_usage(list(Backend.objects.all()))
    return render(request, "campaigns/backends/index.html", _context(request, backends=backend_list))


@role_required("viewer")
def backend_detail(request, pk):
    backend = _with_usage([_backend(pk)])[0]
    return render(request, "campaigns/backends/detail.html", _context(
        request, backend=backend, errors=figures.recent_errors(backend), dns=figures.dkim_dns_record(backend),
    ))


@role_required("admin")
def backend_kind(request):
    kinds = [(value, label, KIND_HINTS[value]) for value, label in Backend.KIND_CHOICES]
    return render(request, "campaigns/backends/kind.html", _context(request, kinds=kinds))


def _save_form(request, form, backend=None):
    saved = form.save()
    dns = getattr(form, "dkim_dns_value", None)
    if dns:
        host = f"{saved.dkim_selector}._domainkey.{saved.dkim_domain}"
        messages.warning(request, f"New DKIM key created. Publish this TXT record at {host} before sending: {dns}")
    messages.success(request, f"Backend “{saved.name}” saved." + ("" if backend else " Test its connection now."))
    return redirect("campaigns:backend_detail", pk=saved.pk)


@role_required("admin")
@require_http_methods(["GET", "POST"])
def backend_create(request, kind):
    if kind not in KIND_FIELDS:
        raise Http404("No such kind of backend.")
    form = BackendForm(request.POST or None, kind=kind)
    if request.method == "POST" and form.is_valid():
        return _save_form(request, form)
    label = dict(Backend.KIND_CHOICES)[kind]
    return render(request, "campaigns/backends/form.html", _context(request, form=form, backend=None, kind_label=label))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def backend_edit(request, pk):
    backend = _backend(pk)
    form = BackendForm(request.POST or None, instance=backend, kind=backend.kind)
    if request.method == "POST" and form.is_valid():
        return _save_form(request, form, backend)
    return render(request, "campaigns/backends/form.html", _context(
        request, form=form, backend=backend, kind_label=backend.get_kind_display(),
    ))


@role_required("admin")
@require_POST
def backend_test(request, pk):
    """Reach the backend without sending anything (campaigns.backends.check_connection)."""
    backend = _backend(pk)
    ok, text = transports.check_connection(backend)
    if request.htmx:
        return render(request, "campaigns/_test_result.html", {"ok": ok, "text": text})
    (messages.success if ok else messages.error)(request, text)
    return redirect("campaigns:backend_detail", pk=pk)


@role_required("admin")
@require_POST
def backend_toggle(request, pk):
    backend = _backend(pk)
    backend.is_active = not backend.is_active
    backend.save(update_fields=["is_active", "updated_at"])
    state = "enabled" if backend.is_active else "disabled: nothing is sent through it until you enable it again"
    messages.success(request, f"Backend “{backend.name}” {state}.")
    if request.POST.get("next") == "index":
        return redirect("campaigns:backend_index")
    return redirect("campaigns:backend_detail", pk=pk)


@role_required("admin")
@require_http_methods(["GET", "POST"])
def backend_delete(request, pk):
    backend = _backend(pk)
    warning = ("Its settings and saved credentials go; messages already sent keep their records, and broadcasts "
               "that chose it use the others by priority. To stop using it for a while, disable it instead.")
    if backend.env_key:
        warning += " It comes from EMAIL_URL and is created again at the next send while that setting stays."
    return confirm_delete(
        request, what=f"the backend “{backend.name}”", warning=warning,
        cancel_url=reverse("campaigns:backend_detail", args=[pk]), done_url=reverse("campaigns:backend_index"),
        delete=backend.delete, done_message=f"Backend “{backend.name}” deleted.",
    )
