"""
The settings hub: sender identities (who messages are from, with the postal
address every footer prints). Everyone with a role reads; admins change.
"""

from django.contrib import messages
from django.db.models import Count, ProtectedError
from django.shortcuts import get_object_or_404, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from autoresponder.roles import has_role, role_required

from .forms import SenderIdentityForm
from .models import SenderIdentity
from .views import confirm_delete, save_or_show


def _context(request, **extra):
    return {"can_manage": has_role(request.user, "admin"), **extra}


@role_required("viewer")
def settings_index(request):
    senders = SenderIdentity.objects.annotate(used=Count("broadcasts")).order_by("name")
    return render(request, "campaigns/settings/index.html", _context(request, senders=senders))


@role_required("admin")
@require_http_methods(["GET", "POST"])
def sender_form(request, pk=None):
    """Create (no pk) or edit a sender identity."""
    sender = get_object_or_404(SenderIdentity, pk=pk) if pk else SenderIdentity()
    form = SenderIdentityForm(request.POST or None, instance=sender)
    return save_or_show(
        request, form, noun="Sender", next_url=lambda saved: reverse("settings"),
        template_name="campaigns/settings/sender_form.html",
        context=_context(request, form=form, sender=sender if sender.pk else None),
    )


@role_required("admin")
@require_http_methods(["GET", "POST"])
def sender_delete(request, pk):
    sender = get_object_or_404(SenderIdentity, pk=pk)
    used = sender.broadcasts.count()
    blocked = ""
    if used:
        blocked = (f"{sender} is the sender of {used} broadcast{pluralize(used)}, so it stays. "
                   "Edit it instead, or add a new sender for future broadcasts.")
    return confirm_delete(
        request, what=f"the sender “{sender.name}”", blocked=blocked,
        warning=f"{sender} will no longer be available for new broadcasts.",
        cancel_url=reverse("settings"), done_url=reverse("settings"),
        delete=lambda: _delete_sender(request, sender), done_message=f"Sender “{sender.name}” deleted.",
    )


def _delete_sender(request, sender):
    try:
        sender.delete()
    except ProtectedError:  # a sequence step (or a broadcast created meanwhile) uses it
        messages.error(request, f"“{sender.name}” is still in use, so it stays.")
        return False
    return True
