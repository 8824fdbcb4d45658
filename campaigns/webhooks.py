"""
ESP events through django-anymail's tracking webhooks (`/webhooks/anymail/<esp>/tracking/`).

Anymail checks the shared secret (ANYMAIL_WEBHOOK_SECRET, HTTP basic auth; plus
the ESP's own signature where it has one), parses each ESP's payload into
normalized events and sends its `tracking` signal; `receive()` below maps each
event to its ledger row and records it:

- the row is found by the ledger id we put in the metadata (campaigns.backends),
  else by our Message-ID (some ESPs echo it), else by the ESP's message id;
- a bounce, deferral, complaint or delivery goes through campaigns.policy (the
  policy acts once per event); an unsubscribe unsubscribes; opens and clicks
  are recorded (we switch the ESPs' own tracking off, so these only come when
  an operator turns it back on);
- every event is stored under a uid made from the ESP's event id (or from the
  payload itself when the ESP has none), so a replayed webhook changes nothing;
- errors are not caught: anymail answers 500 and the ESP tries again later.
"""

import hashlib
import json
import logging

from anymail.signals import EventType, RejectReason, tracking
from django.conf import settings
from django.dispatch import receiver

from . import bounces, events, inbound, policy
from .models import Event, Link, Message

log = logging.getLogger(__name__)

_KIND = {
    EventType.DELIVERED: Event.DELIVERED,
    EventType.BOUNCED: Event.BOUNCE,
    EventType.DEFERRED: Event.DEFERRED,
    EventType.COMPLAINED: Event.COMPLAINT,
    EventType.OPENED: Event.OPEN,
    EventType.CLICKED: Event.CLICK,
    EventType.UNSUBSCRIBED: Event.UNSUBSCRIBE,
}
# The ESP refused to send because of what it knew about the address.
_REJECTED_AS = {
    RejectReason.BOUNCED: Event.BOUNCE,
    RejectReason.INVALID: Event.BOUNCE,
    RejectReason.SPAM: Event.COMPLAINT,
    RejectReason.UNSUBSCRIBED: Event.UNSUBSCRIBE,
}
# How each ESP says a bounce was temporary (anymail reports both kinds as "bounced").
# Mailgun's temporary failures already arrive as "deferred".
_SOFT_BOUNCE = {
    "Amazon SES": lambda raw: (raw.get("bounce") or {}).get("bounceType") in ("Transient", "Undetermined"),
    "Postmark": lambda raw: raw.get("Type") in ("SoftBounce", "VirusNotification"),
    "Mandrill": lambda raw: raw.get("event") == "soft_bounce",
    "Brevo": lambda raw: raw.get("event") == "soft_bounce",
    "SendGrid": lambda raw: raw.get("type") == "blocked",
}


@receiver(tracking, dispatch_uid="campaigns.webhooks.on_tracking")
def on_tracking(sender, event, esp_name, **kwargs):
    receive(event, esp_name)


def receive(event, esp_name):
    """Record one normalized anymail tracking event; returns the event kind recorded (or None)."""
    kind = kind_of(event, esp_name)
    if kind is None:
        return None
    message = find_message(event)
    uid = events.event_uid("webhook", esp_name, event.event_id or _payload_digest(event), event.recipient or "", kind)
    source = f"webhook:{esp_name}"[:30]
    if kind in (Event.OPEN, Event.CLICK):
        return _engagement(kind, event, message, uid, source)
    if kind == Event.UNSUBSCRIBE:
        return _unsubscribe(message, uid, source)
    detail = " ".join(part for part in (event.description, event.mta_response) if part)
    policy.feedback(kind, message=message, email=event.recipient or "", uid=uid, at=event.timestamp,
                    source=source, detail=detail)
    return kind


def kind_of(event, esp_name):
    if event.event_type == EventType.REJECTED:
        return _REJECTED_AS.get(event.reject_reason)
    kind = _KIND.get(event.event_type)
    if kind == Event.BOUNCE and _is_soft(event, esp_name):
        return Event.SOFT_BOUNCE
    return kind


def _is_soft(event, esp_name):
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    tell = _SOFT_BOUNCE.get(esp_name)
    if tell is not None and tell(raw):
        return True
    status = bounces.status_code(event.mta_response or "")
    return bool(status) and bounces.classify(status) != bounces.HARD_BOUNCE


def find_message(event):
    """The ledger row an ESP event is about: by our metadata, our Message-ID, or the ESP's id."""
    pk = _int((event.metadata or {}).get("ledger_id")) or inbound.message_pk_from_message_id(event.message_id)
    rows = Message.objects.select_related("subscriber")
    message = rows.filter(pk=pk).first() if pk else None
    if message is None and event.message_id:
        message = rows.filter(provider_id=str(event.message_id)[:255]).order_by("-pk").first()
    if message is not None and event.recipient and message.email.lower() != event.recipient.strip().lower():
        log.warning("ESP event for %s names message %s, which went to someone else; ignored as unmapped.",
                    event.recipient, message.pk)
        return None
    return message


def _engagement(kind, event, message, uid, source):
    if message is None:
        return None
    link_pk = None
    if kind == Event.CLICK and event.click_url:
        if event.click_url.startswith(f"{settings.SITE_URL}/c/"):
            return None  # our own click redirect counts this click
        digest = hashlib.sha256(event.click_url.encode()).hexdigest()
        link_pk = Link.objects.filter(url_hash=digest).values_list("pk", flat=True).first()
    events.record(kind, message.pk, uid=uid, at=event.timestamp, link_pk=link_pk, source=source,
                  is_machine=events.is_scanner(event.user_agent or ""))
    return kind


def _unsubscribe(message, uid, source):
    from .tracking import unsubscribe_recipient

    if message is None:
        return None
    unsubscribe_recipient(message, reason=f"Unsubscribed at the ESP ({source.split(':', 1)[-1]})")
    events.record(Event.UNSUBSCRIBE, message.pk, uid=events.event_uid("unsubscribe", message.pk), source=source)
    return Event.UNSUBSCRIBE


def _payload_digest(event):
    """A stable id for ESPs that send none (Brevo, Mandrill): the payload itself."""
    raw = event.esp_event
    try:
        text = json.dumps(raw, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = repr(raw)
    return hashlib.sha256(text.encode()).hexdigest()


def _int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None
