"""
Figures and helpers the campaigns dashboard shows; read-only, no business rules.

Sending, scheduling, pausing and test sends are campaigns.broadcasts' and
campaigns.sending's; this module only reads the ledger for display, keeps
rendered previews for the sandboxed iframe, and formats DNS records.
"""

import base64
import secrets
from datetime import timedelta
from types import SimpleNamespace

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef
from django.db.models.functions import Lower
from django.utils import timezone

from lists.models import MailingList, Suppression

from . import rendering
from .composing import Job, NotSendable
from .models import Message

PREVIEW_SECONDS = 15 * 60
RECENT_ERRORS = 5


# --- Backend usage and health --------------------------------------------------------------


USAGE_SECONDS = 30


def sends_in_window(backend_list, *, now=None):
    """{backend id: messages sent in its own quota window}, from the ledger.

    One grouped query per distinct window length (usually one: 24 h). It reads
    what was really sent, which is what an ESP's daily quota counts. Kept for
    USAGE_SECONDS: the sending page and the overview are read far more often
    than a quota moves noticeably.
    """
    key = "campaigns:usage:" + ",".join(f"{b.pk}/{b.window_seconds}" for b in backend_list)
    cached = cache.get(key) if now is None else None
    if cached is None:
        cached = _sends_in_window(backend_list, now or timezone.now())
        cache.set(key, cached, USAGE_SECONDS)
    return cached


def _sends_in_window(backend_list, now):
    by_window = {}
    for backend in backend_list:
        by_window.setdefault(backend.window_seconds or 86400, []).append(backend.pk)
    used = {}
    for seconds, ids in by_window.items():
        rows = (
            Message.objects.filter(backend_id__in=ids, status=Message.SENT, sent_at__gte=now - timedelta(seconds=seconds))
            .values_list("backend_id").annotate(n=Count("pk")).order_by()
        )
        used.update(dict(rows))
    return {pk: used.get(pk, 0) for ids in by_window.values() for pk in ids}


def window_label(seconds):
    """86400 -> "24 h", 604800 -> "7 days", 90 -> "90 s"."""
    seconds = seconds or 86400
    if seconds % 86400 == 0 and seconds >= 2 * 86400:
        return f"{seconds // 86400} days"
    for unit, name in ((3600, "h"), (60, "min")):
        if seconds % unit == 0:
            return f"{seconds // unit} {name}"
    return f"{seconds} s"


def quota_percent(used, limit):
    return min(100, int(100 * used / limit)) if limit else 0


def health(backend, *, now=None):
    """(label, badge class) summing up a backend's state for a table cell."""
    now = now or timezone.now()
    if not backend.is_active:
        return "Disabled", ""
    if backend.down_until and backend.down_until > now:
        return f"Unreachable, resting until {timezone.localtime(backend.down_until):%H:%M}", "danger"
    if backend.last_error_at and (not backend.last_ok_at or backend.last_error_at > backend.last_ok_at):
        return "Last attempt failed", "warn"
    if backend.last_ok_at:
        return "Working", "ok"
    return "Not used yet", ""


def recent_errors(backend, limit=RECENT_ERRORS):
    """The last messages this backend failed or deferred, newest first."""
    return list(
        Message.objects.filter(backend=backend, status__in=(Message.RETRY, Message.FAILED))
        .exclude(last_response="").order_by("-updated_at")
        .values("pk", "email", "status", "last_response", "updated_at")[:limit]
    )


def dkim_dns_record(backend):
    """(host name, TXT value) to publish for the backend's DKIM key, or None."""
    if not backend.has_dkim:
        return None
    try:
        key = serialization.load_pem_private_key(backend.dkim_private_key.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        return None
    if isinstance(key, rsa.RSAPrivateKey):
        kind, public = "rsa", key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    elif isinstance(key, ed25519.Ed25519PrivateKey):
        kind, public = "ed25519", key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        return None
    host = f"{backend.dkim_selector}._domainkey.{backend.dkim_domain}"
    return host, f"v=DKIM1; k={kind}; p={base64.b64encode(public).decode('ascii')}"


# --- Previews ---------------------------------------------------------------------------------
# A rendered preview is kept in the cache under a random token bound to the user
# who asked for it; the sandboxed iframe then loads it from its own URL, with a
# Content-Security-Policy of its own (an iframe's srcdoc would inherit the
# dashboard's policy and break the message's inline styles).


def _preview_key(user_id, token):
    return f"campaigns:preview:{user_id}:{token}"


def store_preview(user, html):
    token = secrets.token_urlsafe(16)
    cache.set(_preview_key(user.pk, token), html, PREVIEW_SECONDS)
    return token


def load_preview(user, token):
    return cache.get(_preview_key(user.pk, token))


SAMPLE_SENDER = SimpleNamespace(
    pk=None, name="Sample sender", from_name="Your name", from_email="you@example.com", reply_to="",
    postal_address="Your postal address, as set in Settings",
)


def draft(*, sender, subject, body, body_format="html", text_body="", layout=None, lists=None, segment=None,
          backend=None, track_opens=False, track_clicks=False):
    """Content not saved as a broadcast (the composer's fields, a template), shaped like
    one, so previews, recipient counts and test sends run the very code that sends:
    campaigns.composing.Job, campaigns.broadcasts and campaigns.ledger.audience."""
    # Job only tests layout_id for truth: an unsaved layout (the layout editor's preview) counts too.
    layout_id = (layout.pk or "unsaved") if layout is not None else None
    return SimpleNamespace(
        pk=None, updated_at=None, sender=sender or SAMPLE_SENDER, subject=subject, body=body,
        body_format=body_format, text_body=text_body, layout=layout, layout_id=layout_id,
        lists=lists if lists is not None else MailingList.objects.none(), segment=segment,
        segment_id=segment.pk if segment else None, backend=backend, backend_id=backend.pk if backend else None,
        track_opens=track_opens, track_clicks=track_clicks,
    )


@dataclass
class Preview:
    subject: str = ""
    html: str = ""
    text: str = ""
    error: str = ""
    problems: tuple = ()
    warnings: tuple = ()


def render_preview(broadcast, subscriber):
    """The message `subscriber` would get, without tracking, plus what would stop it being sent."""
    try:
        job = Job(broadcast)
        context = job.context(0, subscriber)
        rendered = job.prepared.render(context)
    except NotSendable as exc:
        return Preview(error=str(exc))
    except rendering.TemplateError as exc:
        return Preview(error=f"The template failed for this subscriber: {exc}")
    problems = rendering.check_compliance(
        rendered.html, rendered.text, unsubscribe_url=context["unsubscribe_url"],
        postal_address=job.sender.postal_address,
    )
    return Preview(rendered.subject, rendered.html, rendered.text, problems=tuple(problems),
                   warnings=tuple(job.prepared.warnings))


def bounced_count(broadcast):
    """Failed messages of the broadcast whose address is now suppressed as a hard bounce."""
    key = f"campaigns:bounced:{broadcast.pk}:{broadcast.failed_count}"
    found = cache.get(key)
    if found is None:
        bounced = Suppression.objects.filter(email=Lower(OuterRef("email")), reason=Suppression.HARD_BOUNCE)
        found = Message.objects.filter(broadcast=broadcast, status=Message.FAILED).filter(Exists(bounced)).count()
        cache.set(key, found, 300)
    return found


def sample_subscriber():
    """Who a preview shows when no subscriber is chosen."""
    return SimpleNamespace(
        pk=None, email="sam.sample@example.com", name="Sam Sample", time_zone="",
        attributes={"first_name": "Sam", "last_name": "Sample"},
    )
