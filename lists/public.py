"""
Public pages: signup (hosted page, embedded form, JSON), double opt-in
confirmation and the preference centre. No sign-in: a list is named by its
public uuid, a person by a signed token (lists.tokens), never a database id.

Abuse rules shared by every signup entry point: a honeypot field (a filled one
gets the normal "thanks" and nothing is stored), at most SIGNUPS_PER_IP per
10 minutes from one address, the same answer whether or not the address was
already subscribed, and the confirmation-mail caps in lists.services.

CSRF: the hosted page carries a CSRF token like every form of ours. The embed
snippet lives on foreign sites and cannot carry one, so it posts to
`signup_embed`, and scripts post to `signup_json`; both are csrf_exempt. That
is safe because CSRF protects requests that ride on a visitor's session
cookie, and these endpoints read no cookie and answer everyone the same: a
forged cross-site post can do nothing that anyone could not do by posting
directly. What a direct post can do (sign up someone else) is bounded by the
honeypot, the per-IP limit, double opt-in and the per-address mail caps.
"""

import json
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from autoresponder import ratelimit
from autoresponder.middleware import DEFAULT_POLICY

from . import services, tokens
from .forms import SignupForm, custom_fields
from .models import MailingList, Subscription, hex_color
from .tokens import TokenError

SIGNUPS_PER_IP = 10
SIGNUP_WINDOW = 600
MAX_JSON_BODY = 16 * 1024
LIMITED_MESSAGE = "Too many signups from your network. Please wait 10 minutes and try again."


# --- Signup --------------------------------------------------------------------------------


def _open_list(public_id):
    return get_object_or_404(MailingList, public_id=public_id)


def _origin(request):
    """scheme://host of the page that posted, for the consent record (never the full URL, which may hold personal data)."""
    raw = request.headers.get("Origin") or request.headers.get("Referer") or ""
    parts = urlsplit(raw)
    if parts.scheme in ("http", "https") and parts.hostname:
        return f"{parts.scheme}://{parts.netloc}"[:150]
    return ""


def _signup(request, mailing_list, data, form_label):
    """Run one signup; returns (outcome, form) with outcome "ok", "invalid" or "limited"."""
    form = SignupForm(mailing_list, data)
    if not ratelimit.hit("signup", ratelimit.client_ip(request), limit=SIGNUPS_PER_IP, window=SIGNUP_WINDOW):
        return "limited", form
    if form.is_bot:
        return "ok", form  # same answer as a real signup; nothing stored, nothing sent
    if not form.is_valid():
        return "invalid", form
    try:
        services.subscribe(
            mailing_list, form.cleaned_data["email"], name=form.cleaned_data["name"],
            attributes=form.cleaned_data["attributes"], source=Subscription.FORM,
            ip=ratelimit.client_ip(request), user_agent=request.headers.get("User-Agent", ""),
            form=form_label, consent_text=mailing_list.consent_text,
        )
    except services.InvalidSubscriber as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return "invalid", form
    return "ok", form


def _csp_allowing(url):
    """Our policy, plus the thank-you page's origin: browsers apply form-action to the redirect after a POST."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c in parts.netloc for c in " ;,'\""):
        return DEFAULT_POLICY
    return DEFAULT_POLICY.replace("form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}")


def _page(request, template, mailing_list, context=None, status=200):
    context = {"mailing_list": mailing_list, **(context or {})}
    response = render(request, template, context, status=status)
    response["Content-Security-Policy"] = _csp_allowing(mailing_list.thank_you_url if mailing_list else "")
    return response


def _html_outcome(request, mailing_list, outcome, form):
    if outcome == "limited":
        return _page(request, "public/signup.html", mailing_list, {"form": form, "limited": LIMITED_MESSAGE}, 429)
    if outcome == "invalid":
        return _page(request, "public/signup.html", mailing_list, {"form": form}, 400)
    if mailing_list.thank_you_url:
        return redirect(mailing_list.thank_you_url)
    return _page(request, "public/thanks.html", mailing_list)


@require_http_methods(["GET", "POST"])
def signup(request, public_id):
    """The hosted signup page (CSRF-protected)."""
    mailing_list = _open_list(public_id)
    if mailing_list.is_archived:
        return _page(request, "public/closed.html", mailing_list, status=410)
    if request.method == "GET":
        return _page(request, "public/signup.html", mailing_list, {"form": SignupForm(mailing_list)})
    outcome, form = _signup(request, mailing_list, request.POST, "hosted signup page")
    return _html_outcome(request, mailing_list, outcome, form)


@csrf_exempt  # posted from foreign sites by the embed snippet; see the module docstring
@require_POST
def signup_embed(request, public_id):
    """Target of the embeddable form: answers with the thank-you page, or the hosted page with errors."""
    mailing_list = _open_list(public_id)
    if mailing_list.is_archived:
        return _page(request, "public/closed.html", mailing_list, status=410)
    label = " ".join(filter(None, ["embedded form", _origin(request)]))
    outcome, form = _signup(request, mailing_list, request.POST, label)
    return _html_outcome(request, mailing_list, outcome, form)


def _cors(response):
    # No cookies are read or set here, so any origin may call this.
    response["Access-Control-Allow-Origin"] = "*"
    response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "86400"
    return response


def _json(payload, status=200):
    return _cors(JsonResponse(payload, status=status))


def _content_length(request):
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return MAX_JSON_BODY + 1  # unreadable: treat as too large


def _json_data(request):
    """Form fields from a urlencoded/multipart POST or a JSON object (as text/plain to stay a simple request)."""
    if request.content_type not in ("application/json", "text/plain"):
        return request.POST
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or not all(isinstance(v, (str, int, float)) for v in data.values()):
        return None
    return {str(k): str(v) for k, v in data.items()}


@csrf_exempt  # a public API that reads no cookie; see the module docstring
@require_http_methods(["POST", "OPTIONS"])
def signup_json(request, public_id):
    """POST /s/<public_id>/json: {"email", "name", <extra fields>} → {"ok", "message", "redirect"}."""
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204))
    mailing_list = MailingList.objects.filter(public_id=public_id).first()
    if mailing_list is None or mailing_list.is_archived:
        return _json({"ok": False, "error": "This list does not accept signups."}, status=404)
    if _content_length(request) > MAX_JSON_BODY:
        return _json({"ok": False, "error": "The request is too large."}, status=413)
    data = _json_data(request)
    if data is None:
        return _json({"ok": False, "error": "Send a JSON object of text fields, or a form."}, status=400)
    label = " ".join(filter(None, ["JSON API", _origin(request)]))
    outcome, form = _signup(request, mailing_list, data, label)
    if outcome == "limited":
        return _json({"ok": False, "error": LIMITED_MESSAGE}, status=429)
    if outcome == "invalid":
        return _json({"ok": False, "errors": {k: [str(e) for e in v] for k, v in form.errors.items()}}, status=400)
    return _json({"ok": True, "message": mailing_list.thank_you_message, "redirect": mailing_list.thank_you_url or None})


def _text_colour(accent):
    """Black or white, whichever reads better on the accent (WCAG relative luminance)."""
    channels = [int(accent[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#111111" if luminance > 0.35 else "#ffffff"


def list_stylesheet(request, public_id):
    """The list's colours as CSS custom properties: the CSP forbids inline styles, so pages link this."""
    mailing_list = _open_list(public_id)
    accent = mailing_list.accent_color
    try:
        hex_color(accent)
    except Exception:  # an admin may have stored anything; fall back to the default colour
        accent = MailingList._meta.get_field("accent_color").default
    css = f":root {{ --accent: {accent}; --accent-fg: {_text_colour(accent)}; }}\n"
    response = HttpResponse(css, content_type="text/css; charset=utf-8")
    patch_cache_control(response, public=True, max_age=300)
    return response


def embed_snippet(mailing_list):
    """HTML for the marketer to paste into their own site; it posts to signup_embed."""
    html = render_to_string(
        "lists/embed_snippet.html",
        {
            "mailing_list": mailing_list,
            "action": settings.SITE_URL + reverse("lists:public_signup_embed", args=[mailing_list.public_id]),
            "fields": custom_fields(mailing_list),
            "prefix": f"ar-{mailing_list.public_id.hex[:8]}",
        },
    )
    return "\n".join(line for line in html.splitlines() if line.strip()) + "\n"


# --- Confirmation ------------------------------------------------------------------------------


def _invalid_link(request, exc):
    return _page(request, "public/link_invalid.html", None, {"reason": str(exc)}, status=400)


@require_http_methods(["GET", "POST"])
def confirm(request, token):
    """GET shows a button (mail scanners follow links; a GET never confirms); POST confirms."""
    try:
        subscription = tokens.subscription_from_confirm_token(token)
    except TokenError as exc:
        return _invalid_link(request, exc)
    if request.method == "POST":
        subscription = services.confirm(subscription, ip=ratelimit.client_ip(request))
    template = "public/confirm.html" if subscription.status == Subscription.UNCONFIRMED else "public/confirmed.html"
    return _page(request, template, subscription.mailing_list, {"subscription": subscription})


# --- Preference centre ----------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def preferences(request, token):
    """The subscriber's lists: leave or rejoin each, or leave them all."""
    try:
        subscriber = tokens.subscriber_from_preferences_token(token)
    except TokenError as exc:
        return _invalid_link(request, exc)
    if request.method == "POST":
        status = _change_preferences(request, subscriber)
        if status != 200:
            return _preferences_page(request, subscriber, status=status)
        return redirect(request.path)
    return _preferences_page(request, subscriber)


def _preferences_page(request, subscriber, status=200):
    subscriptions = subscriber.subscriptions.select_related("mailing_list").order_by("mailing_list__name", "pk")
    return _page(request, "public/preferences.html", None,
                 {"subscriber": subscriber, "subscriptions": subscriptions}, status=status)


def _change_preferences(request, subscriber):
    """Apply one POSTed choice; returns the HTTP status for the page (200: done, messages set)."""
    action, ip = request.POST.get("action"), ratelimit.client_ip(request)
    if action == "leave_all":
        services.unsubscribe(subscriber, reason="Preference centre: all lists", ip=ip)
        messages.success(request, "You are unsubscribed from every list. You will not get any more mail from us.")
        return 200
    subscription = _chosen_subscription(subscriber, request.POST.get("list"))
    if action not in ("leave", "join") or subscription is None:
        messages.error(request, "That choice is not available. Pick one of the buttons below.")
        return 400
    if action == "leave":
        services.unsubscribe(subscriber, subscription.mailing_list, reason="Preference centre", ip=ip)
        messages.success(request, f"You left {subscription.mailing_list.name}.")
        return 200
    return _rejoin(request, subscriber, subscription.mailing_list, ip)


def _rejoin(request, subscriber, mailing_list, ip):
    if mailing_list.is_archived:
        messages.error(request, f"{mailing_list.name} is closed and cannot be joined again.")
        return 400
    if not ratelimit.hit("signup", ip, limit=SIGNUPS_PER_IP, window=SIGNUP_WINDOW):
        messages.error(request, LIMITED_MESSAGE)
        return 429
    subscription = services.subscribe(
        mailing_list, subscriber.email, source=Subscription.FORM, ip=ip, form="preference centre",
        user_agent=request.headers.get("User-Agent", ""), consent_text=mailing_list.consent_text,
    )
    if subscription.status == Subscription.UNCONFIRMED:
        messages.success(request, f"Almost there: click the link in the mail we sent to confirm {mailing_list.name}.")
    else:
        messages.success(request, f"You are back on {mailing_list.name}.")
    return 200


def _chosen_subscription(subscriber, list_id):
    try:
        public_id = uuid.UUID(str(list_id))
    except ValueError:
        return None
    return subscriber.subscriptions.select_related("mailing_list").filter(mailing_list__public_id=public_id).first()
