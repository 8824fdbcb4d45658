"""
Automatic brakes: a broadcast pauses itself, saying why in plain words, when its
first messages show that the list or the sender is in trouble. Mailing on would
only hurt the sending domain's reputation. Three brakes, set on the bounce
policy (Settings › Bounces and complaints):

- hard bounces: more than `brake_bounce_percent` (5 %) of the watched messages;
- spam complaints: more than `brake_complaint_percent` (0.3 %, where Gmail and
  Yahoo start refusing mail);
- a burst of 5.7.x policy refusals: `policy_pause_after` (5) in a row, checked
  by the sending batch itself (campaigns.sending) and also for sequences.

The rule for the first two. A broadcast is watched over its first
`brake_messages` (1,000) messages; the watch closes once that many have gone
out (sent or refused), and feedback on messages first tried after that does
not count. The rate is bounces (or complaints) of watched messages divided by
the messages that have gone out so far (at most the watched ones). A brake
judges only once `brake_min_messages` (100) have gone out AND at least
MIN_EVENTS (3) bounces or complaints came back, so 1 bounce among the first 3
messages (33 %) pauses nothing, while 6 among the first 100 (6 %) do. Late
reports on watched messages still count after the watch closed (complaints
arrive hours later), and pause the broadcast if it is still sending.

Counted cheaply: one BrakeState row per broadcast, moved with F() in the same
transaction that records the event (campaigns.policy.feedback), so a report
seen twice counts once and no check counts events. A check runs at each new
hard bounce or complaint and after each batch (the messages sent grow past the
minimum with no new bounce). The sent figure is the broadcast's progress
counter, which moves at the end of each batch: a brake may notice up to one
batch per worker late.

A brake trips once per broadcast: resuming says "I have looked", and that
brake does not pause the same broadcast again; the others keep watching.
"""

import logging
from decimal import Decimal

from django.db.models import F, Q
from django.utils import timezone

from .models import BrakeState, Broadcast, Event, Message

log = logging.getLogger(__name__)

MIN_EVENTS = 3
COUNTER = {Event.BOUNCE: "bounces", Event.COMPLAINT: "complaints"}
TRIPPED = {"bounces": "bounce_tripped_at", "complaints": "complaint_tripped_at"}


def _policy():
    from .policy import current

    return current()


def policy_pause_after():
    """5.7.x refusals in a row that pause a broadcast or sequence (0: never)."""
    return _policy().policy_pause_after


# --- Counting -----------------------------------------------------------------------------------


def feedback(kind, message_pk):
    """A new hard bounce or complaint of a ledger row: count it when its message is watched, then
    check. Called by campaigns.policy.feedback in the event's transaction; returns sentences."""
    counter = COUNTER.get(kind)
    if counter is None or not message_pk:
        return []
    row = Message.objects.filter(pk=message_pk, broadcast__isnull=False).values_list(
        "broadcast_id", "first_attempt_at").first()
    if row is None:
        return []
    broadcast_id, first_attempt_at = row
    _ensure(broadcast_id)
    is_watched = Q(closed_at__isnull=True)
    if first_attempt_at is not None:
        is_watched |= Q(closed_at__gte=first_attempt_at)
    if not BrakeState.objects.filter(is_watched, broadcast_id=broadcast_id).update(**{counter: F(counter) + 1}):
        return []  # a message first tried after the watch closed
    return check(broadcast_id)


def after_batch(broadcast_id):
    """After a batch: close the watch once enough messages went out, and judge again (the
    messages sent grew). One query per batch once the watch is closed."""
    row = Broadcast.objects.filter(pk=broadcast_id).values_list(
        "sent_count", "failed_count", "brakes__closed_at").first()
    if row is None or row[2] is not None:
        return []
    gone_out = row[0] + row[1]
    policy = _policy()
    if gone_out >= policy.brake_messages:
        _ensure(broadcast_id)
        BrakeState.objects.filter(broadcast_id=broadcast_id, closed_at__isnull=True).update(
            watched=gone_out, closed_at=timezone.now()
        )
    if gone_out < policy.brake_min_messages:
        return []
    return check(broadcast_id, policy=policy)


def _ensure(broadcast_id):
    BrakeState.objects.bulk_create([BrakeState(broadcast_id=broadcast_id)], ignore_conflicts=True)


# --- Judging ---------------------------------------------------------------------------------


def check(broadcast_id, *, policy=None):
    """Pause the broadcast if a brake trips now; returns what was done (sentences)."""
    policy = policy or _policy()
    state = BrakeState.objects.filter(broadcast_id=broadcast_id).select_related("broadcast").first()
    if state is None or state.broadcast.status != Broadcast.SENDING:
        return []
    found = verdict(policy, gone_out=gone_out(state), bounces=state.bounces, complaints=state.complaints,
                    skip={c for c, f in TRIPPED.items() if getattr(state, f)})
    if found is None:
        return []
    counter, reason = found
    # One conditional UPDATE: of two checks at once, one trips the brake and pauses.
    if not BrakeState.objects.filter(broadcast_id=broadcast_id, **{f"{TRIPPED[counter]}__isnull": True}).update(
        **{TRIPPED[counter]: timezone.now()}
    ):
        return []
    from .broadcasts import pause

    if pause(state.broadcast, reason=reason):
        log.warning("Broadcast %s paused by its %s brake.", broadcast_id, counter)
        return [f"Broadcast “{state.broadcast.name}” paused: {reason}"]
    return []


def gone_out(state):
    """Messages the rates are measured against: those that had gone out when the watch
    closed, else those gone out so far."""
    if state.closed_at is not None:
        return state.watched
    return state.broadcast.sent_count + state.broadcast.failed_count


def verdict(policy, *, gone_out, bounces, complaints, skip=()):
    """(counter, reason) of the first brake that trips, or None. Pure: the rule in one place."""
    if gone_out < max(1, policy.brake_min_messages):
        return None
    checks = (
        ("bounces", bounces, policy.brake_bounce_percent, _bounce_reason),
        ("complaints", complaints, policy.brake_complaint_percent, _complaint_reason),
    )
    for counter, count, limit, reason in checks:
        if counter in skip or not limit or count < MIN_EVENTS:
            continue
        if Decimal(count) * 100 > Decimal(limit) * gone_out:
            return counter, reason(count, gone_out, limit)
    return None


def _percent(count, total):
    return f"{(Decimal(100) * count / total).quantize(Decimal('0.01')).normalize():f} %"


def _limit(limit):
    return f"{Decimal(limit).normalize():f} %"


def _bounce_reason(count, total, limit):
    return (
        f"Paused automatically: {count} of the first {total} messages hard-bounced ({_percent(count, total)}), "
        f"more than the {_limit(limit)} the bounce policy allows. The list probably holds old, mistyped or bought "
        "addresses, and mailing them hurts your sender reputation. The bounced addresses are suppressed already. "
        "Check where this list came from, then resume (this brake will not pause this broadcast again) or cancel."
    )


def _complaint_reason(count, total, limit):
    return (
        f"Paused automatically: {count} of the first {total} messages were reported as spam "
        f"({_percent(count, total)}), more than the {_limit(limit)} the bounce policy allows; at 0.3 % Gmail and "
        "Yahoo start refusing your mail. Check that everyone on these lists asked for it and recognises the "
        "sender, then resume (this brake will not pause this broadcast again) or cancel."
    )


# --- What the broadcast page shows ---------------------------------------------------------------


def summary(broadcast):
    """The three brakes as the broadcast page lists them: [{name, figure, rule, state}]."""
    policy = _policy()
    state = BrakeState.objects.filter(broadcast_id=broadcast.pk).first()
    total = (state.watched if state and state.closed_at else broadcast.sent_count + broadcast.failed_count)
    watching = f"watching the first {policy.brake_messages} messages"
    if state and state.closed_at:
        watching = f"watched the first {state.watched} messages"
    rows = []
    for counter, label, limit in (("bounces", "Hard bounces", policy.brake_bounce_percent),
                                  ("complaints", "Spam complaints", policy.brake_complaint_percent)):
        count = getattr(state, counter) if state else 0
        tripped = getattr(state, TRIPPED[counter]) if state else None
        rows.append({
            "name": label,
            "figure": f"{count} of {total}" + (f" ({_percent(count, total)})" if total else ""),
            "rule": f"pauses above {_limit(limit)}, judged from {policy.brake_min_messages} messages"
                    if limit else "off",
            "state": "tripped" if tripped else ("off" if not limit else watching),
            "tripped_at": tripped,
        })
    after = policy.policy_pause_after
    rows.append({
        "name": "Policy refusals (5.7.x)", "figure": "",
        "rule": f"pauses after {after} in a row" if after else "off",
        "state": "tripped" if "(5.7.x)" in broadcast.pause_reason else ("watching every message" if after else "off"),
        "tripped_at": None,
    })
    return rows
