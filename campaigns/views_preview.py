"""
What the broadcast composer and the template editor share: the sandboxed
preview, the subscriber picker and test sends.

A preview is rendered on the server (campaigns.composing, the code that sends),
kept in the cache under a random token bound to the user, and shown in an
`<iframe sandbox>` (no scripts, no same-origin access) whose page carries its
own Content-Security-Policy: images from anywhere, inline styles, nothing else.
"""

from django.contrib import messages
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache

from autoresponder import ratelimit
from autoresponder.roles import role_required
from lists.services import find_subscriber

from . import broadcasts, presend
from . import dashboard_services as figures

PREVIEW_POLICY = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'"
TEST_SENDS_PER_HOUR = 20
SUBSCRIBER_OPTIONS = 10


def chosen_subscriber(email):
    """The subscriber picked by address for the preview, else the sample one."""
    email = (email or "").strip()
    found = find_subscriber(email) if email else None
    return found or figures.sample_subscriber()


def preview_context(request, broadcast, *, check=True):
    """Render `broadcast` (saved or a draft) for the chosen subscriber; the context of _preview.html.
    `check=False` leaves out the compliance problems (a layout alone need not have a footer)."""
    picked = request.POST.get("preview_email") if request.method == "POST" else request.GET.get("preview_email")
    subscriber = chosen_subscriber(picked)
    if not (broadcast.body or "").strip():
        return {"preview": None, "token": None, "subscriber": subscriber, "check": check}
    preview = figures.render_preview(broadcast, subscriber)
    token = figures.store_preview(request.user, preview.html) if not preview.error else None
    return {"preview": preview, "token": token, "subscriber": subscriber, "check": check}


def preview_partial(request, broadcast, *, check=True):
    """The preview partial (subject, problems, the sandboxed iframe, the text part)."""
    return render(request, "campaigns/_preview.html", preview_context(request, broadcast, check=check))


@role_required("viewer")
@never_cache
def preview_html(request, token):
    """The iframe's page: the rendered message with a policy of its own."""
    html = figures.load_preview(request.user, token)
    if html is None:
        raise Http404("This preview has expired; change anything in the editor to render it again.")
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = PREVIEW_POLICY
    response["X-Frame-Options"] = "SAMEORIGIN"
    response["Referrer-Policy"] = "no-referrer"
    return response


@role_required("viewer")
def subscriber_options(request):
    """<option>s for the preview's subscriber picker (a datalist), by email or name."""
    from lists.search import search_subscribers

    query = request.GET.get("preview_email", "").strip()[:200]
    found = list(search_subscribers(query).only("email", "name")[:SUBSCRIBER_OPTIONS]) if len(query) >= 2 else []
    return render(request, "campaigns/_subscriber_options.html", {"subscribers": found})


def presend_context(target, subscriber=None):
    """The pre-send check of `target` (a broadcast, a draft or a step) for `subscriber`, else
    the first of its audience; the context of _presend.html."""
    shaped, _kind = presend.shape(target)
    subscriber = subscriber or presend.sample_subscriber(shaped)
    results = presend.run(target, subscriber=subscriber)
    return {"presend": results, "presend_counts": presend.counts(results), "presend_subscriber": subscriber}


def presend_partial(request, target):
    """The pre-send check partial for an editor's unsaved fields and the chosen subscriber (htmx)."""
    picked = chosen_subscriber(request.POST.get("preview_email"))
    return render(request, "campaigns/_presend.html", presend_context(target, picked if picked.pk else None))


def test_send(request, broadcast, *, back_url):
    """Send one test copy of `broadcast` (saved or a draft) to the posted address: a partial
    with the outcome for htmx, else a redirect to `back_url` with a message."""
    from .forms import TestSendForm

    form = TestSendForm(request.POST)
    if not form.is_valid():
        return _test_result(request, back_url, False, " ".join(form.errors["email"]))
    if not ratelimit.hit("campaigns-test-send", request.user.pk, limit=TEST_SENDS_PER_HOUR, window=3600):
        return _test_result(request, back_url, False, f"You sent {TEST_SENDS_PER_HOUR} tests in the last hour; "
                                                      "wait a while before sending more.")
    subscriber = chosen_subscriber(request.POST.get("preview_email"))
    ok, text = broadcasts.test_send(broadcast, form.cleaned_data["email"],
                                    subscriber=subscriber if subscriber.pk else None)
    return _test_result(request, back_url, ok, text)


def _test_result(request, back_url, ok, text):
    if not request.htmx:
        (messages.success if ok else messages.error)(request, text)
        return redirect(back_url)
    # 200 even for a refusal: htmx swaps only successful responses, and the refusal is the content.
    return render(request, "campaigns/_test_result.html", {"ok": ok, "text": text})


def content_from_post(post):
    """The message content fields of a posted editor form, as they are (the preview reports errors)."""
    from .models import BODY_FORMAT_CHOICES, Layout

    formats = {value for value, _ in BODY_FORMAT_CHOICES}
    layout_id = post.get("layout", "")
    return {
        "subject": post.get("subject", ""),
        "body": post.get("body", ""),
        "body_format": post.get("body_format") if post.get("body_format") in formats else "html",
        "text_body": post.get("text_body", ""),
        "layout": Layout.objects.filter(pk=layout_id).first() if layout_id.isdigit() else None,
    }
