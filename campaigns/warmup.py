"""
Warm-up: a new backend (a new IP or account) sends a daily number of messages
that grows, so mailbox providers learn to trust it before the big sends.

The schedule is text, one daily cap per day from the start date:
"50 100 500 1000 5000 10000 20000 50000" (5k means 5000). After its last day
there is no cap. Days are counted in the site's time zone (TIME_ZONE) from
`warmup_started_on`; a date before the start counts as day 1, so a warm-up
planned to start on Monday already holds back a send on Sunday.

The cap holds across every worker like the rate limits (campaigns/ratelimit.py):
with Redis, a counter per backend and day taken atomically by a Lua script;
without Redis (the embedded `make run`), a small JSON file per backend under
DATA_DIR behind an exclusive lock. A batch takes its allowance in chunks of up
to CHUNK and gives back what it did not use, so the cap is neither exceeded nor
wasted by a batch that stops early.

A message over the day's cap waits: it goes back to the queue with its next
attempt at the start of the next day (no attempt counted, never failed or
`unknown`), and the broadcast or sequence page says it is waiting for
tomorrow's allowance. If Redis is restarted empty the day's count starts again
from zero (the same trade-off as the quota: persist Redis if that matters).
"""

import logging
import math
import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone

from .ratelimit import RateLimitUnavailable, locked_json, read_json, redis_client, run_script

log = logging.getLogger(__name__)

CHUNK = 10  # messages a batch takes from the day's allowance at a time
MAX_DAYS = 366
_CAP = re.compile(r"^(\d{1,9})(k?)$", re.IGNORECASE)


# --- The schedule --------------------------------------------------------------------------


def parse_schedule(text):
    """'50 100 500 1k' -> [50, 100, 500, 1000]; an empty text is no warm-up ([])."""
    caps = []
    for item in re.split(r"[,;\s]+", (text or "").strip()):
        if not item:
            continue
        match = _CAP.match(item)
        if not match or int(match.group(1)) == 0:
            raise ValidationError(
                f"“{item}” is not a daily cap. Write one whole number above zero per day, without thousands "
                "separators, e.g. 50 100 500 1000 5000 (5k means 5000).", code="warmup_schedule",
            )
        caps.append(int(match.group(1)) * (1000 if match.group(2) else 1))
    if len(caps) > MAX_DAYS:
        raise ValidationError(f"A warm-up lasts at most {MAX_DAYS} days; this one has {len(caps)}.",
                              code="warmup_schedule")
    return caps


def validate_schedule(text):
    parse_schedule(text)


def zone():
    return zoneinfo.ZoneInfo(settings.TIME_ZONE)


def local_date(now=None):
    """The date in the site's time zone (where the warm-up's days begin and end)."""
    return (now or timezone.now()).astimezone(zone()).date()


def day_start(day):
    """The first moment of a local date, as an aware datetime."""
    return datetime.combine(day, time.min, tzinfo=zone())


@dataclass(frozen=True)
class Plan:
    """A backend's warm-up on one day."""

    key: str
    date: date
    day: int  # 1 on the start date
    days: int  # the schedule's length
    cap: int | None  # None: the warm-up is over, no cap

    @property
    def resumes_at(self):
        """When the next day's allowance opens."""
        return day_start(self.date + timedelta(days=1))


def plan_for(owner, now=None, *, key=None):
    """Today's warm-up of `owner` (a backend or a sending domain: anything with warmup_schedule,
    warmup_started_on and pk), or None when it has no warm-up schedule."""
    caps = parse_schedule(owner.warmup_schedule) if owner.warmup_schedule else []
    if not caps:
        return None
    today = local_date(now)
    start = owner.warmup_started_on or today
    day = max(1, (today - start).days + 1)
    return Plan(key=key or f"b{owner.pk}", date=today, day=day, days=len(caps),
                cap=caps[day - 1] if day <= len(caps) else None)


def next_cap(owner, plan):
    """Tomorrow's cap (None: no cap from tomorrow on)."""
    caps = parse_schedule(owner.warmup_schedule)
    return caps[plan.day] if plan.day < len(caps) else None


# --- Taking the day's allowance -------------------------------------------------------------


class Cap:
    """One warm-up (a backend's or a From domain's) as a batch uses it: its share of
    today's cap, taken in chunks one message at a time, the unused rest given back."""

    def __init__(self, plan, label):
        self.plan = plan
        self.label = label
        self.held = 0

    def take_one(self, remaining):
        if self.held < 1:
            self.held += take(self.plan, max(1, min(CHUNK, remaining)))
            if self.held < 1:
                return False
        self.held -= 1
        return True

    def give_back(self):
        if self.held > 0:
            try:
                give_back(self.plan, self.held)
            except RateLimitUnavailable as exc:  # the rest of today's cap is lost, never exceeded
                log.warning("Could not give back %d of today's warm-up allowance: %s", self.held, exc)
        self.held = 0


class Allowance:
    """What a batch may still send today under the warm-ups of its backend and of its From
    domain (a SendingDomain with a schedule); either cap stops it."""

    def __init__(self, backend, from_email="", now=None):
        caps = [Cap(_saved_plan(backend, now, f"b{backend.pk}"), str(backend))]
        domain = sending_domain(from_email)
        if domain is not None:
            caps.append(Cap(_saved_plan(domain, now, f"d{domain.pk}"), f"the sending domain {domain.domain}"))
        self.caps = [cap for cap in caps if cap.plan is not None and cap.plan.cap is not None]
        self.refused = None  # the cap that stopped the batch

    def take_one(self, remaining):
        """True when one more message may go today; `remaining` is how many the batch may
        still send (the size of the next chunk). Raises RateLimitUnavailable."""
        for i, cap in enumerate(self.caps):
            if not cap.take_one(remaining):
                for earlier in self.caps[:i]:
                    earlier.held += 1  # not used: kept for the next try, given back at the end
                self.refused = cap
                return False
        return True

    def give_back(self):
        for cap in self.caps:
            cap.give_back()

    @property
    def resumes_at(self):
        return self.refused.plan.resumes_at

    def hold(self, pk, *, sequence=None):
        """The cap is reached: the other due messages of the broadcast `pk` (or, with `sequence`,
        of the step `pk`) wait for the next day too, in one UPDATE, instead of each batch of them
        being claimed and handed back in turn; and the page says why."""
        from .models import Message

        until = self.resumes_at
        rows = Message.objects.filter(step_id=pk) if sequence is not None else Message.objects.filter(broadcast_id=pk)
        rows.filter(status__in=Message.CLAIMABLE, next_attempt_at__lt=until).update(
            next_attempt_at=until, updated_at=timezone.now()
        )
        if sequence is not None:
            self.note_wait("sequence", sequence.pk)
        else:
            self.note_wait("broadcast", pk)

    def note_wait(self, scope, pk):
        """Remember, until the next day starts, that `scope` (broadcast or sequence) waits."""
        plan = self.refused.plan
        seconds = math.ceil((plan.resumes_at - timezone.now()).total_seconds())
        if seconds > 0:
            cache.set(_wait_key(scope, pk), {"owner": self.refused.label, "cap": plan.cap, "day": plan.day,
                                             "resumes_at": plan.resumes_at.isoformat()}, timeout=seconds)


def _saved_plan(owner, now, key):
    """plan_for() of a saved row; a schedule that no longer parses (saved around the forms'
    validation) is reported and ignored rather than stopping every batch."""
    try:
        return plan_for(owner, now, key=key)
    except ValidationError as exc:
        log.error("The warm-up schedule of %s does not parse and is ignored: %s", owner, exc.messages[0])
        return None


def sending_domain(from_email):
    """The SendingDomain of a From address when it has a warm-up schedule (one indexed query
    per batch)."""
    domain = (from_email or "").rpartition("@")[2].strip().lower()
    if not domain:
        return None
    from .models import SendingDomain

    return SendingDomain.objects.filter(domain=domain).exclude(warmup_schedule="").first()


def take(plan, want):
    """Take up to `want` of the day's cap; returns how many were granted."""
    if plan.cap is None:
        return want
    if settings.REDIS_URL:
        return _redis_call(_TAKE, plan, [want, plan.cap, _TTL])
    return _file_update(plan, lambda used: max(0, min(want, plan.cap - used)))


def give_back(plan, n):
    if n <= 0 or plan.cap is None:
        return
    if settings.REDIS_URL:
        _redis_call(_GIVE_BACK, plan, [n])
    else:
        _file_update(plan, lambda used: -min(n, used))


def used_today(plan):
    """How many messages went (or are taken by batches in flight) today."""
    if settings.REDIS_URL:
        import redis

        try:
            return int(redis_client().get(_key(plan)) or 0)
        except (redis.ConnectionError, redis.TimeoutError):
            return None
    return read_json(_file(plan)).get(plan.date.isoformat(), 0)


# --- Redis -------------------------------------------------------------------------------------

_TTL = 3 * 86400  # a day's counter outlives its day (time zones, clock skew), then goes
_TAKE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local granted = math.max(0, math.min(tonumber(ARGV[1]), tonumber(ARGV[2]) - used))
if granted > 0 then redis.call('INCRBY', KEYS[1], granted) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return granted
"""
_GIVE_BACK = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local back = math.min(used, tonumber(ARGV[1]))
if back > 0 then redis.call('DECRBY', KEYS[1], back) end
return back
"""


def _key(plan):
    return f"ar:warmup:{plan.key}:{plan.date.isoformat()}"


def _redis_call(lua, plan, args):
    return int(run_script(lua, [_key(plan)], args, purpose="the warm-up cap"))


# --- Single machine: a locked file ------------------------------------------------------------


def _file(plan):
    return f"warmup-{plan.key}"


def _file_update(plan, change):
    """Apply change(used) -> delta to today's count under the lock; returns the delta."""
    today, oldest = plan.date.isoformat(), (plan.date - timedelta(days=2)).isoformat()
    with locked_json(_file(plan)) as state:
        for day in [day for day in state if day < oldest]:
            del state[day]
        delta = change(state.get(today, 0))
        state[today] = state.get(today, 0) + delta
    return delta


# --- What the pages show -----------------------------------------------------------------------


def _wait_key(scope, pk):
    return f"campaigns:warmup-wait:{scope}:{pk}"


def waiting(scope, pk):
    """The plain sentence for a broadcast's or sequence's page, or '' when it is not waiting."""
    note = cache.get(_wait_key(scope, pk))
    if not note:
        return ""
    resumes = datetime.fromisoformat(note["resumes_at"])
    return (
        f"Waiting for tomorrow's warm-up allowance: {note['owner']} has sent its {note['cap']} "
        f"message{'' if note['cap'] == 1 else 's'} for "
        f"day {note['day']} of its warm-up. The rest go from {resumes:%Y-%m-%d %H:%M} ({settings.TIME_ZONE}); "
        "nothing has failed."
    )


def seconds_until(when, now=None):
    return max(1.0, (when - (now or timezone.now())).total_seconds())


def status(owner, now=None, *, key=None):
    """The backend's (or sending domain's) page figures: day, cap, used today, tomorrow's cap
    (None without a warm-up)."""
    try:
        plan = plan_for(owner, now, key=key)
    except ValidationError:
        return None
    if plan is None:
        return None
    used = used_today(plan) if plan.cap is not None else None
    return {
        "day": plan.day, "days": plan.days, "cap": plan.cap, "used": used, "is_over": plan.cap is None,
        "next_cap": next_cap(owner, plan) if plan.cap is not None else None,
        "percent": min(100, int(100 * used / plan.cap)) if plan.cap and used is not None else 0,
        "started_on": owner.warmup_started_on, "resumes_at": plan.resumes_at,
    }
