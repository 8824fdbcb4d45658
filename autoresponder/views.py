"""The dashboard shell: sign-in, the overview, the local outbox, health."""

import time

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.core.cache import cache
from django.db import connection
from django.http import Http404, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import outbox, ratelimit, twofactor, views_twofactor
from .celery import HEARTBEAT_KEY
from .roles import role_required

LOGIN_ATTEMPTS_PER_15_MIN = 10


class LoginView(auth_views.LoginView):
    """Django's sign-in, with a per-IP limit on attempts against password guessing."""

    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        ip = ratelimit.client_ip(request)
        if not ratelimit.hit("login", ip, limit=LOGIN_ATTEMPTS_PER_15_MIN, window=900):
            form = self.get_form()
            form.add_error(None, "Too many sign-in attempts from your address. Wait 15 minutes and try again.")
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        # With two-factor sign-in on, the password alone does not log in: the code step does.
        user = form.get_user()
        if twofactor.is_enabled(user):
            views_twofactor.begin(self.request, user, self.get_success_url())
            return redirect("login_code")
        return super().form_valid(form)


def worker_status():
    """How long ago the scheduler and a worker last answered, in seconds (None: never)."""
    seen = cache.get(HEARTBEAT_KEY)
    return None if seen is None else max(0, int(time.time() - seen))


@role_required("viewer")
def home(request):
    from .overview import sections

    return render(
        request,
        "home.html",
        {
            "worker_seen": worker_status(),
            "outbox_recent": outbox.entries(limit=5),
            "outbox_enabled": _outbox_enabled(),
            "sections": sections(request),
        },
    )


def _outbox_enabled():
    from django.conf import settings

    return settings.EMAIL_BACKEND == "autoresponder.outbox.OutboxBackend"


@role_required("viewer")
def outbox_index(request):
    return render(
        request,
        "outbox/index.html",
        {"entries": outbox.entries(limit=200), "total": outbox.count(), "outbox_enabled": _outbox_enabled()},
    )


def _entry_or_404(name):
    entry = outbox.get(name)
    if entry is None:
        raise Http404("No such message in the outbox.")
    return entry


@role_required("viewer")
def outbox_detail(request, name):
    entry = _entry_or_404(name)
    message = entry.parsed()
    text, html = outbox.parts(message)
    headers = [(k, str(v)) for k, v in message.items()]
    return render(
        request,
        "outbox/detail.html",
        {"entry": entry, "headers": headers, "text": text, "has_html": bool(html), "subject": message["subject"]},
    )


@role_required("viewer")
@never_cache
def outbox_html(request, name):
    """The HTML part, for a sandboxed iframe: no scripts, no same-origin access."""
    entry = _entry_or_404(name)
    _, html = outbox.parts(entry.parsed())
    response = HttpResponse(html, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = (
        "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'"
    )
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


@require_GET
def healthz(request):
    """For load balancers and compose healthchecks: the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # report, don't crash: this is a probe
        return JsonResponse({"status": "error", "database": str(exc)}, status=503)
    return JsonResponse({"status": "ok"})


def permission_denied(request, exception=None):
    messages_text = str(exception) if exception else ""
    return render(request, "403.html", {"reason": messages_text}, status=403)
