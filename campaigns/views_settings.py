"""
The settings hub: sender identities (who messages are from, with the postal
address every footer prints). Everyone with a role reads; admins change.
"""

from django.contrib import messages
from django.db.models import Count, ProtectedError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from autoresponder.roles import has_role, role_required

from .forms import SenderIdentityForm
from .models import SenderIdentity


def _context(request, **extra):
    return {"can_manage": has_role(request.user, "admin"), **extra}


@role_required("viewer")
def settings_index(request):
    senders = SenderIdentity.objects.annotate(used=Count("broadcasts")).order_by("name")
    return render(request, "campaigns/settings/index.html", _context(request, senders=senders))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def sender_create(request):
    return _sender_form(request, SenderIdentity())


@role_required("admin")
@require_http_methods(["GET", "POST"])
def sender_edit(request, pk):
    return _sender_form(request, get_object_or_404(SenderIdentity, pk=pk))


def _sender_form(request, sender):
    is_new = sender.pk is None
    form = SenderIdentityForm(request.POST or None, instance=sender)
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Sender “{saved.name}” {'added' if is_new else 'saved'}.")
        return redirect("settings")
    return render(request, "campaigns/settings/sender_form.html", _context(request, form=form, sender=None if is_new else sender))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def sender_delete(request, pk):
    sender = get_object_or_404(SenderIdentity, pk=pk)
    used = sender.broadcasts.count()
    if request.method == "POST":
        try:
            sender.delete()
        except ProtectedError:
            messages.error(request, f"“{sender.name}” is the sender of {used} broadcast(s), so it stays. "
                                    "Edit it instead, or add a new sender for future broadcasts.")
            return redirect("settings")
        messages.success(request, f"Sender “{sender.name}” deleted.")
        return redirect("settings")
    return render(request, "campaigns/settings/sender_delete.html", _context(request, sender=sender, used=used))
