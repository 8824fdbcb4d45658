"""
What happens to the audience, announced to whoever listens: subscriber.created,
subscription.confirmed, subscription.unsubscribed and subscriber.deleted.

`lists` knows nothing of campaigns, yet campaigns turns these events into REST
hook deliveries (campaigns.hooks). So campaigns registers a listener when the
app starts (CampaignsConfig.ready) and the lists services call publish(). This
is a plain registry rather than Django signals (STYLE.md: no signals of our
own): the call sites stay greppable, there is one listener kind, and asking
`wants(event)` first means an event nobody listens to costs no payload and no
query beyond the listener's own cheap check.

Listeners run synchronously, inside the caller's transaction. campaigns'
listener writes its delivery rows there, so an event whose transaction rolls
back is never delivered, and one that commits is never lost.
"""

from dataclasses import dataclass
from typing import Callable

SUBSCRIBER_CREATED = "subscriber.created"
SUBSCRIBER_DELETED = "subscriber.deleted"
SUBSCRIPTION_CONFIRMED = "subscription.confirmed"
SUBSCRIPTION_UNSUBSCRIBED = "subscription.unsubscribed"
EVENTS = (SUBSCRIBER_CREATED, SUBSCRIBER_DELETED, SUBSCRIPTION_CONFIRMED, SUBSCRIPTION_UNSUBSCRIBED)


@dataclass(frozen=True)
class Listener:
    wants: Callable[[str], bool]  # cheap: is anyone interested in this event?
    receive: Callable[[str, list], None]  # (event, [payload dict, …])


_listeners = []


def register(*, wants, receive):
    """Add a listener (once per process, from an AppConfig.ready); returns it."""
    listener = Listener(wants, receive)
    if listener not in _listeners:
        _listeners.append(listener)
    return listener


def unregister(listener):
    if listener in _listeners:
        _listeners.remove(listener)


def wanted(event):
    """Whether any listener wants `event` (callers may skip building payloads when not)."""
    return any(listener.wants(event) for listener in _listeners)


def publish(event, payloads):
    """Announce `event`; `payloads` is a list of dicts, or a callable returning one, called
    only when a listener wants the event."""
    interested = [listener for listener in _listeners if listener.wants(event)]
    if not interested:
        return
    if callable(payloads):
        payloads = payloads()
    if payloads:
        for listener in interested:
            listener.receive(event, list(payloads))


# --- Payloads: one shape for every entry point --------------------------------------------


def _iso(value):
    return value.isoformat() if value else None


def subscriber_fields(subscriber):
    return {
        "id": subscriber.pk,
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes,
        "time_zone": subscriber.time_zone,
        "status": subscriber.status,
        "created_at": _iso(subscriber.created_at),
    }


def list_payload(mailing_list):
    return {"id": mailing_list.pk, "public_id": str(mailing_list.public_id), "name": mailing_list.name}


def subscription_payload(subscription):
    return {
        "subscription": {
            "id": subscription.pk,
            "status": subscription.status,
            "source": subscription.source,
            "confirmed_at": _iso(subscription.confirmed_at),
            "unsubscribed_at": _iso(subscription.unsubscribed_at),
            "unsubscribe_reason": subscription.unsubscribe_reason,
        },
        "list": list_payload(subscription.mailing_list),
        "subscriber": subscriber_fields(subscription.subscriber),
    }


def created_payload(subscriber):
    return {"subscriber": subscriber_fields(subscriber)}


def deleted_payload(subscriber, *, erased):
    """The subscriber as it was before deletion or GDPR erasure (erased: True), so the receiving
    system can delete or erase its own copy."""
    return {"subscriber": {"id": subscriber.pk, "email": subscriber.email}, "erased": erased}
