"""
A subscriber's activity for their dashboard page: the messages they were sent
and what happened to them (opens, clicks, unsubscribes, bounces, complaints),
newest first. lists shows it without importing campaigns, through
autoresponder.overview.subscriber_sections.

Two small queries, each on an index: the subscriber's latest messages
(Message.subscriber) and the latest events of their messages (Event.message).
Opens and clicks of an aggregate-only list are not tied to a message, so they
never appear here — which is what aggregate-only promises.
"""

from dataclasses import dataclass
from datetime import datetime

from .models import Event, Message

MESSAGES_SHOWN = 30
EVENTS_SHOWN = 70


@dataclass
class Entry:
    at: datetime
    kind: str  # "sent", "failed", … for messages; an Event kind otherwise
    label: str
    what: str  # the broadcast or sequence step
    url: str = ""
    detail: str = ""


def _what(message):
    if message.broadcast_id:
        return message.broadcast.name
    if message.step_id:
        step = message.step
        return f"{step.sequence.name}, step {step.position}" + (f" ({step.name})" if step.name else "")
    return "a test message"


def _url(message):
    from django.urls import NoReverseMatch, reverse

    try:
        if message.broadcast_id:
            return reverse("campaigns:broadcast_detail", args=[message.broadcast_id])
        if message.step_id:
            return reverse("campaigns:sequence_detail", args=[message.step.sequence_id])
    except NoReverseMatch:
        pass
    return ""


def timeline(subscriber):
    """[Entry], newest first: at most MESSAGES_SHOWN messages and EVENTS_SHOWN events."""
    messages = (Message.objects.filter(subscriber=subscriber).select_related("broadcast", "step__sequence")
                .order_by("-created_at", "-pk")[:MESSAGES_SHOWN])
    events = (Event.objects.filter(message__subscriber=subscriber, is_machine=False)
              .select_related("message__broadcast", "message__step__sequence", "link")
              .order_by("-created_at", "-pk")[:EVENTS_SHOWN])
    entries = [Entry(m.sent_at or m.created_at, m.status, m.get_status_display(), _what(m), _url(m),
                     m.last_response if m.status in (Message.FAILED, Message.RETRY) else "") for m in messages]
    entries += [Entry(e.created_at, e.kind, e.get_kind_display(), _what(e.message), _url(e.message),
                      e.link.url if e.link_id else e.detail) for e in events]
    return sorted(entries, key=lambda entry: entry.at, reverse=True)


def subscriber_sections(request, subscriber):
    return [{"template": "campaigns/_subscriber_activity.html", "data": {"entries": timeline(subscriber)}}]
