"""
Dashboard pages for layouts and saved templates. Viewers read and preview;
editors create, edit, delete and send tests. Saving validates the Liquid
(campaigns.rendering.validate, through the models' clean()) and shows the line
and reason of any error; nothing is saved until it parses.
"""

from types import SimpleNamespace

from django.contrib import messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder.roles import has_role, role_required

from . import dashboard_services as figures
from .forms import STARTER_BODY, LayoutForm, TemplateForm
from .models import Layout, SenderIdentity, Template
from .views import confirm_delete, save_or_show
from .views_preview import content_from_post, preview_context, preview_partial, test_send

SAMPLE_BODY = (
    "<h1>Hello {{ subscriber.first_name | default: \"there\" }},</h1>\n"
    "<p>This sample shows where each message's content goes in the layout.</p>\n"
    "<p><a href=\"https://example.com/\">A sample link</a></p>"
)


def _context(request, **extra):
    return {"can_edit": has_role(request.user, "editor"), "senders": SenderIdentity.objects.all(), **extra}


def _sender(value):
    """The sender a template is previewed and tested with: the one picked, else the first."""
    value = str(value or "")
    chosen = SenderIdentity.objects.filter(pk=value).first() if value.isdigit() else None
    return chosen or SenderIdentity.objects.first()


def _template_draft(content, sender_id):
    return figures.draft(sender=_sender(sender_id), **content)


def _content_of(template):
    return {"subject": template.subject, "body": template.body, "body_format": template.body_format,
            "text_body": template.text_body, "layout": template.layout}


@role_required("viewer")
def template_index(request):
    templates = Template.objects.select_related("layout")
    layouts = Layout.objects.annotate(used=Count("template", distinct=True))
    return render(request, "campaigns/templates/index.html", _context(request, templates=templates, layouts=layouts))


# --- Templates --------------------------------------------------------------------------------


@role_required("viewer")
def template_detail(request, pk):
    template = get_object_or_404(Template.objects.select_related("layout"), pk=pk)
    draft = _template_draft(_content_of(template), request.GET.get("preview_sender"))
    return render(request, "campaigns/templates/detail.html", _context(
        request, template=template, **preview_context(request, draft),
    ))


@role_required("viewer")
def template_preview(request, pk):
    """The preview partial of a saved template (GET: for a picked subscriber and sender)."""
    template = get_object_or_404(Template.objects.select_related("layout"), pk=pk)
    return preview_partial(request, _template_draft(_content_of(template), request.GET.get("preview_sender")))


@role_required("editor")
@require_http_methods(["GET", "POST"])
def template_form(request, pk=None):
    """Create (no pk) or edit a template."""
    template = get_object_or_404(Template, pk=pk) if pk else Template()
    form = TemplateForm(request.POST or None, instance=template, initial={} if template.pk else {"body": STARTER_BODY})
    cancel = reverse("campaigns:template_detail", args=[template.pk]) if template.pk else reverse("campaigns:template_index")
    return save_or_show(
        request, form, noun="Template", template_name="campaigns/templates/form.html",
        next_url=lambda saved: reverse("campaigns:template_detail", args=[saved.pk]),
        context=_context(
            request, form=form, heading=f"Edit “{template.name}”" if template.pk else "New template",
            preview_url=reverse("campaigns:template_draft_preview"), test_url=reverse("campaigns:template_draft_test"),
            cancel_url=cancel, delete_url=reverse("campaigns:template_delete", args=[template.pk]) if template.pk else "",
        ),
    )


@role_required("editor")
@require_POST
def template_draft_preview(request):
    """Live preview of the editor's unsaved fields (htmx, debounced)."""
    return preview_partial(request, _template_draft(content_from_post(request.POST), request.POST.get("preview_sender")))


@role_required("editor")
@require_POST
def template_draft_test(request):
    """A test send of the editor's unsaved fields."""
    draft = _template_draft(content_from_post(request.POST), request.POST.get("preview_sender"))
    if draft.sender is figures.SAMPLE_SENDER:
        return test_send_refused(request, reverse("campaigns:template_index"))
    return test_send(request, draft, back_url=reverse("campaigns:template_index"))


@role_required("editor")
@require_POST
def template_test(request, pk):
    template = get_object_or_404(Template.objects.select_related("layout"), pk=pk)
    back = reverse("campaigns:template_detail", args=[pk])
    draft = _template_draft(_content_of(template), request.POST.get("preview_sender"))
    if draft.sender is figures.SAMPLE_SENDER:
        return test_send_refused(request, back)
    return test_send(request, draft, back_url=back)


def test_send_refused(request, back_url):
    text = "Add a sender identity under Settings first: a test is sent from it."
    if not request.htmx:
        messages.error(request, text)
        return redirect(back_url)
    return render(request, "campaigns/_test_result.html", {"ok": False, "text": text})


@role_required("editor")
@require_http_methods(["GET", "POST"])
def template_delete(request, pk):
    template = get_object_or_404(Template, pk=pk)
    return confirm_delete(
        request, what=f"the template “{template.name}”",
        warning="Broadcasts started from this template keep their own copy of the content.",
        cancel_url=reverse("campaigns:template_detail", args=[pk]), done_url=reverse("campaigns:template_index"),
        delete=template.delete, done_message=f"Template “{template.name}” deleted.",
    )


# --- Layouts ----------------------------------------------------------------------------------


def _layout_draft(html, sender_id, pk=None):
    layout = SimpleNamespace(pk=pk, html=html)
    return figures.draft(sender=_sender(sender_id), subject="Layout preview", body=SAMPLE_BODY, layout=layout)


@role_required("editor")
@require_POST
def layout_draft_preview(request):
    draft = _layout_draft(request.POST.get("html", ""), request.POST.get("preview_sender"))
    return preview_partial(request, draft, check=False)


@role_required("editor")
@require_http_methods(["GET", "POST"])
def layout_form(request, pk=None):
    """Create (no pk) or edit a layout."""
    layout = get_object_or_404(Layout, pk=pk) if pk else Layout()
    form = LayoutForm(request.POST or None, instance=layout)
    return save_or_show(
        request, form, noun="Layout", template_name="campaigns/templates/form.html",
        next_url=lambda saved: reverse("campaigns:template_index"),
        context=_context(
            request, form=form, heading=f"Edit layout “{layout.name}”" if layout.pk else "New layout",
            preview_url=reverse("campaigns:layout_draft_preview"), preview_heading="Live preview, with sample content",
            cancel_url=reverse("campaigns:template_index"),
            delete_url=reverse("campaigns:layout_delete", args=[layout.pk]) if layout.pk else "",
        ),
    )


@role_required("editor")
@require_http_methods(["GET", "POST"])
def layout_delete(request, pk):
    layout = get_object_or_404(Layout, pk=pk)
    return confirm_delete(
        request, what=f"the layout “{layout.name}”",
        warning="Templates and broadcasts that use this layout will have none; their content stays.",
        cancel_url=reverse("campaigns:layout_edit", args=[pk]), done_url=reverse("campaigns:template_index"),
        delete=layout.delete, done_message=f"Layout “{layout.name}” deleted.",
    )
