"""
The public per-message endpoints, named by signed tokens (autoresponder.tokens):

- `/u/<token>`: unsubscribe. A POST is RFC 8058 one-click (mail apps post
  `List-Unsubscribe=One-Click` with no cookie and no CSRF token, so the view is
  csrf_exempt; the signed token is the authority). It answers 200, never a
  redirect, is idempotent, and the change is committed before the answer. A GET
  only shows a page with a button, because mail scanners open every link.
- `/c/<token>`: click redirect, to a stored Link only; anything else is a 404
  without a Location header, so the endpoint cannot be used as an open redirect.
- `/o/<token>.gif`: the open pixel; always the GIF, whatever the token.
- `/v/<token>`: the message in a browser ("view in browser").

Opens and clicks are recorded by `seen()` (campaigns.events: buffered in Redis,
drained into Postgres in batches); HEAD requests are answered and flagged as
machines. The busiest two, the pixel and the redirect, are usually answered by
campaigns.fastpath in front of Django, with the same results.
"""

import base64
import logging

from django.http import Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods

from autoresponder import ratelimit

from autoresponder import tokens

from . import composing
from .models import Link, Message

log = logging.getLogger(__name__)

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
VIEWS_PER_IP = 60  # per minute: each view renders a template


# --- Services --------------------------------------------------------------------------------


def message_for(purpose, token):
    """The Message a token names (None when it names no stored message); raises BadToken."""
    values = tokens.unsign(purpose, token)
    if len(values) != (2 if purpose == composing.CLICK else 1):
        raise tokens.BadToken("wrong number of values")
    return Message.objects.select_related("subscriber", "broadcast").filter(pk=values[0]).first(), values


def unsubscribe_recipient(message, *, ip=None, reason="Unsubscribe link"):
    """Unsubscribe a message's recipient from the broadcast's lists, or the sequence's list for a
    step's mail (all lists when it went to a segment, or its step is gone); their messages still
    queued are then skipped at claim time. Returns subscriptions changed."""
    from lists.services import unsubscribe

    if message is None or message.subscriber is None:
        return 0
    if message.broadcast_id:
        lists = list(message.broadcast.lists.all())
    elif message.step_id:
        lists = [message.step.sequence.mailing_list]
    else:
        lists = []
    if not lists:
        return unsubscribe(message.subscriber, None, reason=reason, ip=ip)
    return sum(unsubscribe(message.subscriber, each, reason=reason, ip=ip) for each in lists)


def seen(kind, message_pk, link_pk=None, *, request=None):
    """An open or a click happened: record it (never raises; the answer goes out regardless)."""
    from . import events

    try:
        events.hit(kind, message_pk, link_pk, head=request is not None and request.method == "HEAD",
                   user_agent=request.headers.get("User-Agent", "") if request is not None else "")
    except Exception:  # noqa: BLE001 - the pixel and the redirect never fail because recording did
        log.exception("Could not record a %s of message %s.", kind, message_pk)


def _record_unsubscribe(message, *, source):
    """One unsubscribe event per message, however many times and ways it is asked for."""
    from . import events
    from .models import Event

    events.record(Event.UNSUBSCRIBE, message.pk, uid=events.event_uid("unsubscribe", message.pk), source=source)


# --- Views -----------------------------------------------------------------------------------


def _first_list(message):
    if message is None or not message.broadcast_id:
        return None
    return message.broadcast.lists.order_by("pk").first()


def _invalid(request):
    return render(request, "campaigns/public/link_invalid.html", status=404)


@csrf_exempt
@require_http_methods(["GET", "POST"])
def unsubscribe(request, token):
    try:
        message, _ = message_for(composing.UNSUBSCRIBE, token)
    except tokens.BadToken:
        return _invalid(request)
    context = {"message": message, "mailing_list": _first_list(message), "token": token}
    if message is not None and message.subscriber is not None:
        from lists.tokens import preferences_url

        context["preferences_url"] = preferences_url(message.subscriber)
    if request.method == "POST":
        one_click = request.POST.get("List-Unsubscribe") == "One-Click"
        reason = "One-click unsubscribe (List-Unsubscribe-Post)" if one_click else "Unsubscribe page"
        if unsubscribe_recipient(message, ip=ratelimit.client_ip(request), reason=reason):
            _record_unsubscribe(message, source="one-click" if one_click else "page")
        return _uncached(render(request, "campaigns/public/unsubscribed.html", context))
    return _uncached(render(request, "campaigns/public/unsubscribe.html", context))


def _values(purpose, token, count):
    """The integers a token of `purpose` carries, or None when it is not ours or has the wrong shape."""
    try:
        values = tokens.unsign(purpose, token)
    except tokens.BadToken:
        return None
    return values if len(values) == count else None


def _uncached(response):
    add_never_cache_headers(response)
    return response


@require_http_methods(["GET", "HEAD"])
def click(request, token):
    values = _values(composing.CLICK, token, 2)
    url = Link.objects.filter(pk=values[1]).values_list("url", flat=True).first() if values else None
    if url is None:
        raise Http404("Unknown link")
    seen("click", *values, request=request)
    return _uncached(HttpResponseRedirect(url))


@require_http_methods(["GET", "HEAD"])
def open_pixel(request, token):
    values = _values(composing.OPEN, token, 1)
    if values:
        seen("open", values[0], request=request)
    return _uncached(HttpResponse(PIXEL, content_type="image/gif"))


@require_GET
def view_in_browser(request, token):
    if not ratelimit.hit("campaigns-view", ratelimit.client_ip(request), limit=VIEWS_PER_IP, window=60):
        return HttpResponse("Too many requests; wait a minute and reload.", status=429, content_type="text/plain")
    try:
        message, _ = message_for(composing.VIEW, token)
    except tokens.BadToken:
        return _invalid(request)
    if message is None or message.subscriber is None or message.broadcast is None:
        return _invalid(request)
    try:
        _context, rendered = composing.Job.for_broadcast(message.broadcast).render(message.pk, message.subscriber)
    except composing.NotSendable:
        return _invalid(request)
    response = HttpResponse(rendered.html, content_type="text/html; charset=utf-8")
    # Marketer HTML with inlined styles: no scripts, no access to our origin.
    response["Content-Security-Policy"] = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox"
    return _uncached(response)
