"""
Per-recipient-domain throttling on the SMTP path: at most so many messages per
minute (or second, or hour) to one mailbox provider, through one backend.

Gmail, Outlook and Yahoo answer a burst from a young or unknown IP with 4xx
deferrals ("421 4.7.28 … unusual rate") and then with worse; spreading the
mail out keeps the replies 2xx. The backend's `domain_throttle` is a short text:

    google=600/min, microsoft=300/min, yahoo=300/min, *=120/min

- `google` is gmail.com and googlemail.com, `microsoft` is outlook.*, hotmail.*,
  live.*, msn.com, `yahoo` is yahoo.*, ymail.com, rocketmail.com, aol.com: each
  provider counts as one, whichever of its domains the addresses use;
- any other name is one domain (`example.org=60/min`);
- `*` is the limit for every other domain, each domain counted on its own.
  Domains that no rule names (and no `*`) are not throttled.

Enforced across every worker like the rate limits (campaigns/ratelimit.py): a
sliding window per backend and provider in Redis, 60 sub-window counters, the
oldest partly expired one still counted so the limit is never exceeded. A batch
asks once, for all its rows (one Lua call per batch, not per message); the rows
over a provider's limit go back to the queue at once, no attempt counted, due
when the window has room again; rows beyond more than one window's worth are
spread over the following windows instead of being claimed and deferred again
every few seconds.
"""

import math
import re
import time
from collections import defaultdict
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError

from .ratelimit import SLOTS, RateLimitUnavailable, locked_json, run_script

_COUNTRY = r"([a-z]{2,3}|co\.[a-z]{2}|com\.[a-z]{2})"  # .com, .fr, .co.uk, .com.br …
PROVIDERS = {
    "google": re.compile(r"^(gmail|googlemail)\.com$"),
    "microsoft": re.compile(rf"^((hotmail|outlook|live|windowslive)\.{_COUNTRY}|msn\.com)$"),
    "yahoo": re.compile(rf"^(yahoo\.{_COUNTRY}|(ymail|rocketmail|aol)\.com)$"),
}
UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600}
_RULE = re.compile(r"^(?P<name>\*|[a-z0-9.-]+)\s*=\s*(?P<count>\d{1,7})\s*/\s*(?P<unit>[a-z]+)$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
RETRY_WHEN_UNAVAILABLE = 5  # seconds: Redis down, the batch's rows wait rather than exceed a limit


@dataclass(frozen=True)
class Rule:
    limit: int
    window: int  # seconds

    @property
    def slot(self):
        return max(1, math.ceil(self.window / SLOTS))

    def __str__(self):
        unit = {1: "s", 60: "min", 3600: "h"}[self.window]
        return f"{self.limit}/{unit}"


# --- The rules ------------------------------------------------------------------------------------


def parse(text):
    """'google=600/min, *=120/min' -> {'google': Rule(600, 60), '*': Rule(120, 60)}."""
    rules = {}
    for item in re.split(r"[,;\n]+", (text or "").strip().lower()):
        item = item.strip()
        if not item:
            continue
        match = _RULE.match(item)
        if not match:
            raise _invalid(f"“{item}” is not a limit. Write provider=number/unit, e.g. google=600/min.")
        name, count, unit = match.group("name"), int(match.group("count")), match.group("unit")
        if name != "*" and name not in PROVIDERS and not _DOMAIN.match(name):
            raise _invalid(f"“{name}” is not google, microsoft, yahoo, * or a domain name such as example.org.")
        if unit not in UNITS:
            raise _invalid(f"“{unit}” is not a unit. Use /s, /min or /h.")
        if count == 0:
            raise _invalid(f"{name}: the limit must be at least 1 message. Remove the rule to send without a limit.")
        if name in rules:
            raise _invalid(f"{name} has two limits. Keep one.")
        rules[name] = Rule(count, UNITS[unit])
    return rules


def _invalid(text):
    return ValidationError(text, code="domain_throttle")


def validate(text):
    parse(text)


def provider_of(email):
    """(provider, domain): the provider is google, microsoft or yahoo, else the domain itself."""
    domain = email.rpartition("@")[2].strip().rstrip(".").lower()
    for name, pattern in PROVIDERS.items():
        if pattern.match(domain):
            return name, domain
    return domain, domain


def rule_for(rules, email):
    """(bucket, Rule) for a recipient, or (provider, None) when no rule applies."""
    provider, domain = provider_of(email)
    return provider, rules.get(provider) or rules.get(domain) or rules.get("*")


# --- A batch's rows -----------------------------------------------------------------------------


def defer(backend, rows, token):
    """Hand back the rows of a claimed batch that would exceed a provider's limit; returns
    their ids (the batch skips them). Only SMTP backends with `domain_throttle` set."""
    if backend.kind != "smtp" or not backend.domain_throttle:
        return set()
    try:
        rules = parse(backend.domain_throttle)
    except ValidationError:  # saved before validation existed: send unthrottled rather than not at all
        return set()
    groups, limits = defaultdict(list), {}
    for row in rows:
        bucket, rule = rule_for(rules, row["email"])
        if rule is not None:
            groups[bucket].append(row["pk"])
            limits[bucket] = rule
    if not groups:
        return set()
    try:
        grants = take(f"b{backend.pk}", {bucket: (limits[bucket], len(pks)) for bucket, pks in groups.items()})
    except RateLimitUnavailable:
        return _release({RETRY_WHEN_UNAVAILABLE: [pk for pks in groups.values() for pk in pks]}, token)
    later = defaultdict(list)
    for bucket, pks in groups.items():
        granted, wait = grants[bucket]
        rule = limits[bucket]
        for k, pk in enumerate(pks[granted:]):
            # The first `limit` wait for room in the window; each further `limit` a window more.
            later[math.ceil(max(1.0, wait)) + rule.window * (k // rule.limit)].append(pk)
    return _release(later, token)


def _release(by_delay, token):
    from . import ledger

    deferred = set()
    for delay, pks in by_delay.items():
        ledger.release(pks, token, delay=delay)
        deferred.update(pks)
    return deferred


def take(key, wants):
    """{bucket: (Rule, want)} -> {bucket: (granted, wait seconds)}, atomically for all buckets."""
    if settings.REDIS_URL:
        return _take_redis(key, wants)
    return _take_file(key, wants)


# --- Redis ---------------------------------------------------------------------------------------

_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
for i = 1, #KEYS do
  local limit, window = tonumber(ARGV[4*i-3]), tonumber(ARGV[4*i-2])
  local want, slot = tonumber(ARGV[4*i-1]), tonumber(ARGV[4*i])
  local span = math.ceil(window / slot)
  local current = math.floor(now / slot)
  local slots = redis.call('HGETALL', KEYS[i])
  local used, oldest = 0, current
  for j = 1, #slots, 2 do
    local s = tonumber(slots[j])
    if s < current - span then redis.call('HDEL', KEYS[i], slots[j])
    else used = used + tonumber(slots[j + 1]); if s < oldest then oldest = s end end
  end
  local granted = math.max(0, math.min(want, limit - used))
  if granted > 0 then
    redis.call('HINCRBY', KEYS[i], tostring(current), granted)
    redis.call('EXPIRE', KEYS[i], window + 2 * slot)
  end
  local wait = 0
  if granted < want then wait = (oldest + span + 1) * slot - now end
  out[#out + 1] = granted
  out[#out + 1] = tostring(wait)
end
return out
"""


def _take_redis(key, wants):
    buckets = list(wants)
    keys = [f"ar:throttle:{key}:{bucket}" for bucket in buckets]
    args = []
    for bucket in buckets:
        rule, want = wants[bucket]
        args += [rule.limit, rule.window, want, rule.slot]
    out = run_script(_LUA, keys, args, purpose="the per-domain limits")
    return {bucket: (int(out[2 * i]), float(out[2 * i + 1])) for i, bucket in enumerate(buckets)}


# --- Single machine: a locked file ----------------------------------------------------------------


def _take_file(key, wants):
    with locked_json(f"throttle-{key}") as state:
        now = time.time()
        result = {bucket: _apply(state.setdefault(bucket, {}), rule, want, now)
                  for bucket, (rule, want) in wants.items()}
        for bucket in [bucket for bucket, slots in state.items() if not slots]:
            del state[bucket]
    return result


def _apply(slots, rule, want, now):
    """The Lua script's arithmetic for one bucket, on a dict {slot: count} (changed in place)."""
    slot, span = rule.slot, math.ceil(rule.window / rule.slot)
    current = math.floor(now / slot)
    for s in [s for s in slots if int(s) < current - span]:
        del slots[s]
    used = sum(slots.values())
    oldest = min((int(s) for s in slots), default=current)
    granted = max(0, min(want, rule.limit - used))
    if granted:
        slots[str(current)] = slots.get(str(current), 0) + granted
    wait = (oldest + span + 1) * slot - now if granted < want else 0.0
    return granted, wait
