"""
REST hooks (the resthooks.org pattern): another system subscribes a target URL
to an event; each event is POSTed there as JSON, signed, retried, logged.

Emitting. `emit(event, payload)` / `emit_many(event, payloads)` write one
HookDelivery row per active hook of that event (`emit_rows` for the payloads an
SQL query selects, in one INSERT … SELECT on Postgres), in the caller's transaction,
and ring the delivery task once that transaction commits. The rows are an
outbox: a rolled-back event leaves none, so it is never delivered; a committed
one is never lost, even if the process dies before the bell rings (the beat
finds it within HOOK_BEAT_SECONDS). The audience's events (subscriber.created,
subscription.confirmed, …) come through lists.events, which this module
listens to from CampaignsConfig.ready(); lists never imports campaigns.

Delivering. `deliver_due()` claims due deliveries (FOR UPDATE SKIP LOCKED; a
claim pushes next_attempt_at out by a lease, so a worker that dies mid-POST
leaves the row to be retried after the lease) and POSTs each one through the
SSRF-safe client (campaigns.hooks_client). Outcomes:
- 2xx: delivered.
- 410 Gone: the target unsubscribed; the hook is deleted (resthooks.org).
- network error, timeout, 5xx, 408 or 429: retried with exponential back-off
  (1, 2, 4, 8 … minutes, at most 6 hours apart) until a day after the event,
  then failed for good.
- any other answer (3xx: redirects are not followed; 4xx): failed for good.
A hook whose deliveries keep failing (HOOK_DISABLE_AFTER failed for good in a
row, or one that failed for a whole day) is disabled, with the reason shown to
its owner on the overview and the hooks page; re-enabling resumes its pending
deliveries.

Delivery is at-least-once: a receiver should ignore a delivery id
(X-Autoresponder-Delivery, also the body's "id") it has already processed.
Order is the order of the events for deliveries that succeed at the first
attempt; a retried delivery arrives after later ones.
"""

import json
import logging
import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from . import hooks_client
from .models import Hook, HookDelivery

log = logging.getLogger(__name__)

EVENTS = {
    "subscriber.created": "A subscriber was added (signup form, dashboard, API, bulk upsert, CSV import).",
    "subscriber.deleted": "A subscriber was deleted, or erased at their request (\"erased\": true).",
    "subscription.confirmed": "A subscription became confirmed (double opt-in click, single opt-in signup, API, "
                              "an import that vouches for consent).",
    "subscription.unsubscribed": "A subscription was unsubscribed (link, preference centre, API, dashboard, import).",
    "message.sent": "A message was accepted by the sending backend.",
    "message.bounced": "A message bounced for good (the address is suppressed).",
    "message.complained": "The recipient marked a message as spam (the address is suppressed).",
    "message.opened": "A message was opened (machine opens by scanners excluded).",
    "message.clicked": "A tracked link in a message was clicked (scanner clicks excluded).",
    "broadcast.finished": "A broadcast finished sending (with its final counts).",
}
EVENT_NAMES = tuple(EVENTS)
LEASE = timedelta(minutes=2)  # longer than the client's connect + read timeouts
CLAIM_BATCH = 50
WANTED_TTL = 5.0  # seconds an in-process answer of wanted() is trusted
RING_DEBOUNCE = 1  # second
_SIGNATURE_HEADER = hooks_client.SIGNATURE_HEADER
_encode = DjangoJSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_wanted = {"events": frozenset(), "until": 0.0}


def _setting(name, default):
    return getattr(settings, name, default)


# --- Subscribing ----------------------------------------------------------------------------------


class HookError(ValueError):
    """A hook that cannot be subscribed; `.field` names the input, the message what to fix."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field, self.message = field, message


def subscribe(*, event, target, owner):
    """Subscribe `target` to `event` for `owner`; returns the Hook (its .secret signs deliveries).

    The target is checked now (http(s), resolves to public addresses only) and
    again at every delivery. Raises HookError.
    """
    if event not in EVENTS:
        raise HookError("event", f"Unknown event {event!r}; choose one of: {', '.join(EVENT_NAMES)}.")
    try:
        hooks_client.check_target(target)
    except hooks_client.UnsafeTarget as exc:
        raise HookError("target", str(exc)) from None
    if Hook.objects.filter(event=event, target=target).exists():
        raise HookError("target", "This target is already subscribed to this event.")
    hook = Hook.objects.create(event=event, target=target, owner=owner, secret=new_secret())
    forget_wanted()
    return hook


def new_secret():
    import secrets

    return "whsec_" + secrets.token_urlsafe(32)


def rotate_secret(hook):
    hook.secret = new_secret()
    hook.save(update_fields=["secret", "updated_at"])
    return hook


def unsubscribe(hook):
    """Delete the hook and its delivery log."""
    hook.delete()
    forget_wanted()


def enable(hook):
    """Switch a disabled hook back on; its pending deliveries go out again."""
    Hook.objects.filter(pk=hook.pk).update(is_active=True, consecutive_failures=0, disabled_at=None,
                                           disabled_reason="", updated_at=timezone.now())
    HookDelivery.objects.filter(hook=hook, status=HookDelivery.PENDING).update(next_attempt_at=timezone.now())
    hook.refresh_from_db()
    forget_wanted()
    transaction.on_commit(ring)


def disable(hook, reason):
    Hook.objects.filter(pk=hook.pk, is_active=True).update(
        is_active=False, disabled_at=timezone.now(), disabled_reason=reason[:2000], updated_at=timezone.now())
    hook.refresh_from_db()
    forget_wanted()


# --- Emitting ---------------------------------------------------------------------------------------


def wanted(event):
    """Whether an active hook listens to `event`; cached in this process for WANTED_TTL seconds,
    so hot paths (a message sent) can ask per batch at no cost. Changes made through this module
    are seen at once in this process, within seconds in others."""
    if time.monotonic() >= _wanted["until"]:
        _wanted["events"] = frozenset(Hook.objects.filter(is_active=True).values_list("event", flat=True).distinct())
        _wanted["until"] = time.monotonic() + WANTED_TTL
    return event in _wanted["events"]


def forget_wanted():
    _wanted["until"] = 0.0


def emit(event, payload):
    """Queue `payload` for every active hook of `event` (see the module docstring); returns how many."""
    return emit_many(event, [payload])


def emit_many(event, payloads):
    """emit() for many payloads of one event, in one INSERT per thousand deliveries."""
    if event not in EVENTS:
        raise ValueError(f"Unknown hook event {event!r}.")
    hook_ids = list(Hook.objects.filter(event=event, is_active=True).values_list("pk", flat=True))
    if not hook_ids or not payloads:
        return 0
    now = timezone.now()
    rows = []
    for payload in payloads:
        for hook_id in hook_ids:
            delivery_id = uuid.uuid4()
            body = {"id": str(delivery_id), "event": event, "created_at": now.isoformat(), "data": payload}
            rows.append(HookDelivery(uid=delivery_id, hook_id=hook_id, event=event, body=json.loads(_encode(body)),
                                     next_attempt_at=now, expires_at=now + give_up_after()))
    HookDelivery.objects.bulk_create(rows, batch_size=1000)
    transaction.on_commit(ring)
    return len(rows)


def emit_rows(event, sql, params=()):
    """emit_many() for the payloads `sql` selects (one jsonb column, in the order of its rows), written by one
    INSERT … SELECT: a CSV import of a million subscribers builds no payload in Python. Postgres only (as
    lists.events.publish_rows). Returns how many."""
    if event not in EVENTS:
        raise ValueError(f"Unknown hook event {event!r}.")
    hook_ids = list(Hook.objects.filter(event=event, is_active=True).values_list("pk", flat=True))
    if not hook_ids:
        return 0
    now = timezone.now()
    # Rows in payload order, then hook order, as emit_many writes them: ids follow, and so does delivery.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {HookDelivery._meta.db_table} (uid, hook_id, event, body, status, attempts,"
            " next_attempt_at, expires_at, last_error, attempt_log, created_at)"
            " SELECT d.uid, d.hook_id, %s, jsonb_build_object('id', d.uid::text, 'event', %s, 'created_at', %s,"
            " 'data', d.payload), %s, 0, %s, %s, '', '[]'::jsonb, %s"
            " FROM (SELECT gen_random_uuid() AS uid, h.id AS hook_id, p.payload, p.n, h.n AS hook_n"
            f" FROM (SELECT payload, row_number() OVER () AS n FROM ({sql}) AS q(payload)) AS p"
            " CROSS JOIN unnest(%s::bigint[]) WITH ORDINALITY AS h(id, n)) AS d ORDER BY d.n, d.hook_n",
            [event, event, now.isoformat(), HookDelivery.PENDING, now, now + give_up_after(), now, *params,
             hook_ids],
        )
        written = cursor.rowcount
    if written:
        transaction.on_commit(ring)
    return written


def ring():
    """Ask a worker to deliver soon (the beat does it anyway every HOOK_BEAT_SECONDS).

    Rung after every emitting commit, so it is debounced: at most one task per RING_DEBOUNCE
    second across processes (cache.add is atomic), started that second later so it finds every
    delivery committed meanwhile. A message.sent hook thus costs one Redis round trip per
    message, not one task. Without a broker (eager mode) it delivers at once.
    """
    from .tasks import deliver_hooks

    try:
        if settings.CELERY_TASK_ALWAYS_EAGER:
            deliver_hooks.delay()
        elif cache.add("campaigns:hooks:ring", 1, timeout=RING_DEBOUNCE):
            deliver_hooks.apply_async(countdown=RING_DEBOUNCE)
    except Exception:  # a broker that is down must not fail the request that emitted; the beat delivers
        log.warning("Could not ring the hook delivery task; the beat will deliver.", exc_info=True)


def listen_to_lists():
    """Make lists.events deliveries of ours (called once from CampaignsConfig.ready)."""
    from lists import events

    events.register(wants=wanted, receive=emit_many, receive_rows=emit_rows)


# --- Delivering -------------------------------------------------------------------------------------


def deliver_due(*, limit=CLAIM_BATCH, now=None):
    """Claim and attempt up to `limit` due deliveries; returns how many were attempted."""
    claimed = claim(limit, now=now)
    for delivery in claimed:
        attempt(delivery, now=now)
    return len(claimed)


def claim(limit, *, now=None):
    """Due deliveries of active hooks, leased to this caller (their next_attempt_at moves out by LEASE)."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            HookDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(status=HookDelivery.PENDING, next_attempt_at__lte=now, hook__is_active=True)
            .order_by("next_attempt_at", "pk")[:limit]
        )
        HookDelivery.objects.filter(pk__in=[d.pk for d in due]).update(next_attempt_at=now + LEASE)
    return HookDelivery.objects.filter(pk__in=[d.pk for d in due]).select_related("hook").order_by(
        "created_at", "pk")


def attempt(delivery, *, now=None):
    """POST one delivery and record the outcome (as of `now`); returns the hooks_client.Answer."""
    hook = delivery.hook
    body = _encode(delivery.body).encode("utf-8")
    headers = {
        _SIGNATURE_HEADER: hooks_client.signature_header(hook.secret, body, time.time()),
        "X-Autoresponder-Event": delivery.event,
        "X-Autoresponder-Delivery": str(delivery.uid),
    }
    answer = hooks_client.post(hook.target, body, headers)
    record(delivery, answer, now=now)
    return answer


def give_up_after():
    return _setting("HOOK_GIVE_UP", timedelta(days=1))


def retry_delay(attempts):
    """Wait after the `attempts`-th failed attempt: 1, 2, 4, 8 … minutes, at most HOOK_RETRY_MAX."""
    base = _setting("HOOK_RETRY_BASE", timedelta(minutes=1))
    return min(base * 2 ** (attempts - 1), _setting("HOOK_RETRY_MAX", timedelta(hours=6)))


def _retryable(answer):
    return answer.status is None or answer.status >= 500 or answer.status in (408, 429)


def record(delivery, answer, *, now=None):
    """Write an attempt's outcome to the delivery and its hook (see the module docstring)."""
    now = now or timezone.now()
    delivery.attempts += 1
    delivery.last_status, delivery.last_error = answer.status, (answer.error or answer.body)[:2000]
    delivery.attempt_log = [*delivery.attempt_log, {
        "at": now.isoformat(), "status": answer.status, "error": answer.error, "response": answer.body,
        "ms": answer.elapsed_ms}][-50:]
    if answer.status is not None and 200 <= answer.status < 300:
        return _delivered(delivery, now)
    if answer.status == 410:
        log.info("Hook %s answered 410 Gone; removing it.", delivery.hook_id)
        return unsubscribe(delivery.hook)
    next_at = now + retry_delay(delivery.attempts)
    if _retryable(answer) and next_at < delivery.expires_at:
        delivery.next_attempt_at = next_at
        delivery.save(update_fields=["attempts", "last_status", "last_error", "attempt_log", "next_attempt_at"])
        Hook.objects.filter(pk=delivery.hook_id).update(last_failure_at=now)
        return
    _failed(delivery, now, gave_up=_retryable(answer))


def _delivered(delivery, now):
    delivery.status, delivery.delivered_at = HookDelivery.DELIVERED, now
    delivery.save(update_fields=["attempts", "last_status", "last_error", "attempt_log", "status", "delivered_at"])
    Hook.objects.filter(pk=delivery.hook_id).update(consecutive_failures=0, last_success_at=now)


def _failed(delivery, now, *, gave_up):
    delivery.status = HookDelivery.FAILED
    delivery.save(update_fields=["attempts", "last_status", "last_error", "attempt_log", "status"])
    Hook.objects.filter(pk=delivery.hook_id).update(consecutive_failures=F("consecutive_failures") + 1,
                                                    last_failure_at=now)
    hook = Hook.objects.get(pk=delivery.hook_id)
    limit = _setting("HOOK_DISABLE_AFTER", 20)
    if gave_up:
        disable(hook, f"Deliveries to {hook.target} kept failing for a day (last: {_summary(delivery)}). "
                      "Fix the receiver, then enable the hook again; its waiting deliveries will go out.")
    elif hook.consecutive_failures >= limit:
        disable(hook, f"The last {hook.consecutive_failures} deliveries were refused (last: {_summary(delivery)}). "
                      "Fix the receiver, then enable the hook again.")


def _summary(delivery):
    if delivery.last_status is None:
        return delivery.last_error[:200] or "no answer"
    return f"HTTP {delivery.last_status}"


def retry_delivery(delivery):
    """Send a failed delivery again now (the dashboard's "retry")."""
    now = timezone.now()
    HookDelivery.objects.filter(pk=delivery.pk, status=HookDelivery.FAILED).update(
        status=HookDelivery.PENDING, next_attempt_at=now, expires_at=now + give_up_after())
    transaction.on_commit(ring)


def deliver_for(seconds):
    """Deliver batches until none is due or `seconds` have passed; returns whether work remains."""
    deadline = time.monotonic() + seconds
    while deliver_due():
        if time.monotonic() >= deadline:
            return True
    return False


def prune(*, days=None, limit=10_000):
    """Delete finished deliveries older than HOOK_LOG_DAYS (30); returns how many."""
    days = days if days is not None else _setting("HOOK_LOG_DAYS", 30)
    old = HookDelivery.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).exclude(
        status=HookDelivery.PENDING).values_list("pk", flat=True)[:limit]
    return HookDelivery.objects.filter(pk__in=list(old)).delete()[0]
