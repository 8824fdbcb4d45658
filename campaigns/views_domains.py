"""
Dashboard pages for sending domains: the DNS records to publish and the result
of their checks. Everyone with a role reads them (never the private keys, which
no page renders); editors may run the check; admins add, change and delete.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required

from . import domain_checks, domains
from .forms_domains import DomainCreateForm, DomainSettingsForm
from .models import DkimKey, SendingDomain
from .views import confirm_delete

STATUS_BADGES = {SendingDomain.PENDING: "warn", SendingDomain.VERIFIED: "ok", SendingDomain.FAILING: "danger"}
LEVEL_BADGES = {"ok": ("OK", "ok"), "warning": ("Warning", "warn"), "error": ("Error", "danger")}


def _context(request, **extra):
    return {"can_manage": has_role(request.user, "admin"), "can_check": has_role(request.user, "editor"), **extra}


def _domain(pk):
    return get_object_or_404(SendingDomain, pk=pk)


def _checks(sending_domain):
    return [{**c, "badge": LEVEL_BADGES.get(c.get("level"), ("?", ""))} for c in sending_domain.checks]


@role_required("viewer")
def domain_index(request):
    domain_list = list(SendingDomain.objects.all())
    for d in domain_list:
        d.badge = STATUS_BADGES[d.status]
    return render(request, "campaigns/domains/index.html", _context(request, domains=domain_list))


@role_required("viewer")
def domain_detail(request, pk):
    sending_domain = _domain(pk)
    return render(request, "campaigns/domains/detail.html", _context(
        request, domain=sending_domain, badge=STATUS_BADGES[sending_domain.status],
        records=domains.records(sending_domain), checks=_checks(sending_domain),
        retired=sending_domain.keys.filter(state=DkimKey.RETIRED),
        has_ed25519=sending_domain.keys.filter(algorithm=DkimKey.ED25519).exclude(state=DkimKey.RETIRED).exists(),
    ))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def domain_create(request):
    form = DomainCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            created = domains.create_domain(data["domain"], dmarc_rua=data["dmarc_rua"],
                                            return_path_domain=data["return_path_domain"], ed25519=data["ed25519"])
        except ValidationError as exc:
            form.add_error("domain", exc)
        else:
            messages.success(request, f"{created.domain} added with a new DKIM key. Publish the records below "
                                      "at your DNS host, then press Check now.")
            return redirect("campaigns:domain_detail", pk=created.pk)
    return render(request, "campaigns/domains/form.html", _context(request, form=form, domain=None))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def domain_edit(request, pk):
    sending_domain = _domain(pk)
    form = DomainSettingsForm(request.POST or None, instance=sending_domain)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, f"{sending_domain.domain} saved. Check it again to see the effect on its records.")
        return redirect("campaigns:domain_detail", pk=pk)
    return render(request, "campaigns/domains/form.html", _context(request, form=form, domain=sending_domain))


@role_required("editor")
@require_POST
def domain_check(request, pk):
    """Look the records up now (campaigns.domain_checks.check) and show the results."""
    sending_domain = _domain(pk)
    domain_checks.check(sending_domain)
    if request.htmx:
        return render(request, "campaigns/domains/_checks.html", _context(
            request, domain=sending_domain, badge=STATUS_BADGES[sending_domain.status], checks=_checks(sending_domain),
        ))
    label = sending_domain.get_status_display()
    (messages.success if sending_domain.status == SendingDomain.VERIFIED else messages.warning)(
        request, f"{sending_domain.domain} checked: {label}.")
    return redirect("campaigns:domain_detail", pk=pk)


@role_required("admin")
@require_POST
def domain_rotate(request, pk):
    sending_domain = _domain(pk)
    added = domains.rotate(sending_domain)
    if added:
        names = ", ".join(k.record_name for k in added)
        messages.success(request, f"New key created. Publish its record at {names}; the next check that finds it "
                                  "switches signing to it, and the old key's record is shown until you remove it.")
    else:
        messages.warning(request, "A new key is already waiting to be published; publish it, then check again.")
    return redirect("campaigns:domain_detail", pk=pk)


@role_required("admin")
@require_POST
def domain_add_ed25519(request, pk):
    sending_domain = _domain(pk)
    try:
        key = domains.add_ed25519(sending_domain)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Ed25519 key created. Publish its record at {key.record_name}; mail gets the "
                                  "second signature once the check finds it.")
    return redirect("campaigns:domain_detail", pk=pk)


@role_required("admin")
@require_POST
def key_forget(request, pk, key_pk):
    key = get_object_or_404(DkimKey, pk=key_pk, domain_id=pk)
    try:
        domains.forget_key(key)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, f"Key {key.selector} removed. Delete its TXT record at {key.record_name} "
                                  "if it is still published.")
    return redirect("campaigns:domain_detail", pk=pk)


@role_required("admin")
@require_http_methods(["GET", "POST"])
def domain_delete(request, pk):
    sending_domain = _domain(pk)
    return confirm_delete(
        request, what=f"the sending domain {sending_domain.domain}",
        warning="Its DKIM keys go with it: mail From this domain is no longer signed with them (a backend's own "
                "key, if it has one, signs instead). Remove its DKIM records from your DNS afterwards.",
        cancel_url=reverse("campaigns:domain_detail", args=[pk]), done_url=reverse("campaigns:domain_index"),
        delete=lambda: domains.delete_domain(sending_domain),
        done_message=f"Sending domain {sending_domain.domain} deleted.",
    )
