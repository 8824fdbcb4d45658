"""
Sending limits per backend that hold across every worker process and machine.

Two limits, checked together in one atomic step:

- a token bucket for messages per second (capacity: one second's worth, so a
  burst never exceeds the configured rate by more than that);
- a sliding-window quota (e.g. 50,000 per 24 h for an ESP's daily limit). The
  window is kept as 60 sub-window counters; the oldest, partly expired counter is
  still counted, so the quota is never exceeded — at worst a message waits up
  to 1/60 of the window longer than strictly needed.

With Redis (REDIS_URL set) the state lives in Redis and a Lua script does the
arithmetic, using Redis's own clock so machines with skewed clocks agree. If
Redis is restarted empty the buckets start full again, which is harmless; the
window quota then forgets what was sent before the restart (documented
trade-off: persist Redis if an ESP quota must survive a restart).

Without Redis (the embedded `make run`: one machine, SQLite) the same algorithm
runs in Python on a small JSON file per backend under DATA_DIR, serialised by
an exclusive file lock, which is correct for any number of local processes.
The per-domain throttle and the warm-up caps keep their state the same two ways,
with the helpers at the end of this file.
"""

import fcntl
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

SLOTS = 60


class RateLimitUnavailable(Exception):
    """The shared limiter cannot be reached; send nothing rather than exceed a limit."""


@dataclass(frozen=True)
class Limits:
    key: str
    rate: float  # messages per second; 0 = unlimited
    window_limit: int  # 0 = no quota
    window_seconds: int

    @classmethod
    def of(cls, backend):
        return cls(f"b{backend.pk}", float(backend.rate_per_second or 0), int(backend.window_limit or 0),
                   int(backend.window_seconds or 86400))

    @property
    def is_unlimited(self):
        return self.rate <= 0 and self.window_limit <= 0

    @property
    def capacity(self):
        return max(1.0, self.rate)

    @property
    def slot_seconds(self):
        return max(1, math.ceil(self.window_seconds / SLOTS))


def take(limits, want):
    """Take up to `want` sends now. Returns (granted, wait): when granted is 0, wait
    is how many seconds until one more send is allowed."""
    if limits.is_unlimited or want <= 0:
        return want, 0.0
    if settings.REDIS_URL:
        return _take_redis(limits, want)
    return _take_file(limits, want)


# --- Redis ---------------------------------------------------------------------

_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate, capacity, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local limit, window, slot = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local granted, wait, tokens = want, 0, 0
if rate > 0 then
  local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
  tokens = tonumber(b[1]) or capacity
  local ts = tonumber(b[2]) or now
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
  granted = math.min(granted, math.floor(tokens))
  if granted < 1 then granted = 0; wait = (1 - tokens) / rate end
end
if limit > 0 and granted > 0 then
  local current = math.floor(now / slot)
  local oldest_kept = current - math.ceil(window / slot)
  local slots = redis.call('HGETALL', KEYS[2])
  local used, oldest = 0, current
  for i = 1, #slots, 2 do
    local s = tonumber(slots[i])
    if s < oldest_kept then redis.call('HDEL', KEYS[2], slots[i])
    else used = used + tonumber(slots[i + 1]); if s < oldest then oldest = s end end
  end
  granted = math.max(0, math.min(granted, limit - used))
  if granted == 0 then wait = (oldest + math.ceil(window / slot) + 1) * slot - now
  else
    redis.call('HINCRBY', KEYS[2], tostring(current), granted)
    redis.call('EXPIRE', KEYS[2], window + 2 * slot)
  end
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - granted), 'ts', tostring(now))
  redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
end
return {granted, tostring(wait)}
"""


def _take_redis(limits, want):
    keys = [f"ar:rate:{limits.key}:bucket", f"ar:rate:{limits.key}:window"]
    args = [limits.rate, limits.capacity, want, limits.window_limit, limits.window_seconds, limits.slot_seconds]
    granted, wait = run_script(_LUA, keys, args, purpose="the sending rate limit")
    return int(granted), float(wait)


# --- Single machine: a locked file ----------------------------------------------


def _take_file(limits, want):
    with locked_json(limits.key) as state:
        return _apply(limits, state, want, time.time())


def _apply(limits, state, want, now):
    """The Lua script's arithmetic, on a dict."""
    granted, wait, tokens = want, 0.0, 0.0
    if limits.rate > 0:
        tokens = min(limits.capacity, state.get("tokens", limits.capacity) + max(0, now - state.get("ts", now)) * limits.rate)
        granted = min(granted, math.floor(tokens))
        if granted < 1:
            granted, wait = 0, (1 - tokens) / limits.rate
    if limits.window_limit > 0 and granted > 0:
        granted, wait = _apply_window(limits, state, granted, now)
    if limits.rate > 0:
        state["tokens"], state["ts"] = tokens - granted, now
    return granted, wait


def _apply_window(limits, state, granted, now):
    slot = limits.slot_seconds
    span = math.ceil(limits.window_seconds / slot)
    current = math.floor(now / slot)
    slots = {int(k): v for k, v in state.get("slots", {}).items() if int(k) >= current - span}
    granted = max(0, min(granted, limits.window_limit - sum(slots.values())))
    wait = 0.0
    if granted == 0:
        wait = (min(slots, default=current) + span + 1) * slot - now
    else:
        slots[current] = slots.get(current, 0) + granted
    state["slots"] = {str(k): v for k, v in slots.items()}
    return granted, wait


# --- Shared with the per-domain throttle and the warm-up caps -------------------

_redis = {}


def redis_client():
    """One client per process (redis-py pools are fork-safe)."""
    if "client" not in _redis:
        import redis

        _redis["client"] = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=3, socket_connect_timeout=3)
    return _redis["client"]


def run_script(lua, keys, args, *, purpose):
    """Run a Lua script, registered once per process. When Redis cannot be reached this raises
    RateLimitUnavailable, saying what it was for ('the warm-up cap')."""
    import redis

    if lua not in _redis:
        _redis[lua] = redis_client().register_script(lua)
    try:
        return _redis[lua](keys=keys, args=args)
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RateLimitUnavailable(f"Redis cannot be reached for {purpose}: {exc}") from exc


def state_path(name):
    folder = Path(settings.DATA_DIR) / "ratelimit"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.json"


@contextmanager
def locked_json(name):
    """The dict saved in DATA_DIR/ratelimit/<name>.json, for a block that holds the file's
    exclusive lock (local processes take turns); written back when the block ends without an
    error. A missing or unreadable file starts as {}."""
    with open(state_path(name), "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file closes
        fh.seek(0)
        try:
            state = json.loads(fh.read() or "{}")
        except ValueError:
            state = {}
        yield state
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(state))
        fh.flush()
        os.fsync(fh.fileno())


def read_json(name):
    """The dict as last saved, without waiting for the lock (for the pages)."""
    try:
        return json.loads(state_path(name).read_text() or "{}")
    except (OSError, ValueError):
        return {}
