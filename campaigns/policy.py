"""
What bounces and complaints do to an address, decided by data (BouncePolicy),
not code: a hard bounce suppresses at once; soft bounces suppress after N
within M days; a complaint unsubscribes from every list and suppresses.

`feedback(...)` is the one door for every bounce, deferral, complaint and
delivery, whichever way it came (the SMTP reply, the bounce mailbox, an ESP
webhook): it records the event and, only when the event is new, applies the
policy — in one transaction, so an error leaves neither half behind and a
report seen twice acts once.
"""

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from . import brakes, events
from .models import BouncePolicy, Event, Message

log = logging.getLogger(__name__)

SUPPRESSION_REASON = {Event.BOUNCE: "hard_bounce", Event.SOFT_BOUNCE: "soft_bounce", Event.COMPLAINT: "complaint"}


def current():
    """The policy (one row, created with the defaults on first use)."""
    return BouncePolicy.objects.get_or_create(pk=1)[0]


def feedback(kind, *, message=None, email="", uid, at=None, source, detail=""):
    """Record a bounce, soft bounce, deferral, complaint or delivery and apply the policy
    once. `message` is the ledger row when known; `email` the address otherwise.
    Returns what was done (a list of plain sentences; empty when the event was not new)."""
    email = (email or (message.email if message else "")).strip().lower()
    with transaction.atomic():
        is_new = events.record(
            kind, message.pk if message else None, uid=uid, at=at, source=source, detail=detail
        )
        if not is_new:
            return []
        done = apply(kind, message=message, email=email, detail=detail)
        if message is not None:  # a broadcast's hard bounces and complaints move its brakes
            done += brakes.feedback(kind, message.pk)
        return done


def apply(kind, *, message=None, email, detail=""):
    policy = current()
    if kind == Event.BOUNCE and policy.hard_bounce_suppresses:
        return _suppress(email, kind, detail)
    if kind == Event.SOFT_BOUNCE and policy.soft_bounce_limit:
        count = soft_bounces(message, email, days=policy.soft_bounce_days)
        if count >= policy.soft_bounce_limit:
            return _suppress(email, kind, f"{count} soft bounces within {policy.soft_bounce_days} days; last: {detail}")
    if kind == Event.COMPLAINT:
        done = []
        if policy.complaint_unsubscribes:
            done += _unsubscribe_everywhere(message, email, detail)
        if policy.complaint_suppresses:
            done += _suppress(email, kind, detail)
        return done
    return []


def soft_bounces(message, email, *, days):
    """Soft bounces of the address in the last `days` days, this one included."""
    since = timezone.now() - timedelta(days=days)
    recent = Event.objects.filter(kind=Event.SOFT_BOUNCE, created_at__gte=since)
    if message is not None and message.subscriber_id:
        # Uses the ledger's (subscriber, broadcast) index, then the events' message index.
        return recent.filter(message__subscriber_id=message.subscriber_id).count()
    return recent.filter(message__email__iexact=email).count() if email else 0


def _suppress(email, kind, detail):
    from lists.services import suppress

    if not email:
        return []
    try:
        suppress(email, reason=SUPPRESSION_REASON[kind], detail=detail)
    except ValueError as exc:  # not an address at all: nothing to suppress
        log.warning("Not suppressing %r: %s", email, exc)
        return []
    return [f"{email} suppressed ({SUPPRESSION_REASON[kind].replace('_', ' ')})."]


def _unsubscribe_everywhere(message, email, detail):
    from lists.services import find_subscriber, unsubscribe

    subscriber = message.subscriber if message is not None and message.subscriber_id else find_subscriber(email)
    if subscriber is None:
        return []
    changed = unsubscribe(subscriber, None, reason=f"Spam complaint: {detail}"[:200])
    return [f"{subscriber.email} unsubscribed from {changed} list(s) after a complaint."] if changed else []


def message_by_pk(pk):
    return Message.objects.select_related("subscriber").filter(pk=pk).first() if pk else None
