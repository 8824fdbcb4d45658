"""
Pieces the campaigns dashboard views share (the views themselves live in
views_broadcasts, views_templates, views_sending, views_settings and
views_preview, one file per area).
"""

from django.contrib import messages
from django.shortcuts import redirect, render


def save_or_show(request, form, *, noun, next_url, template_name, context):
    """A create/edit page: on a valid POST save, say so and go to `next_url(saved)`; else show the form."""
    is_new = form.instance.pk is None
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"{noun} “{saved.name}” {'created' if is_new else 'saved'}.")
        return redirect(next_url(saved))
    return render(request, template_name, context)


def confirm_delete(request, *, what, warning, cancel_url, done_url, delete, done_message, blocked=""):
    """GET asks (or says why it cannot be deleted); POST runs `delete()` and goes to `done_url`.
    `delete` returns False when it refused after all (it then said why itself)."""
    if request.method == "POST" and not blocked:
        if delete() is not False:
            messages.success(request, done_message)
        return redirect(done_url)
    return render(request, "campaigns/confirm_delete.html", {
        "what": what, "warning": warning, "cancel_url": cancel_url, "blocked": blocked,
    })
