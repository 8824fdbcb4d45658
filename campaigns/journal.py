"""
A batch's outcomes: journaled in Redis at once, written to Postgres in sets.

Writing each message's outcome to Postgres as it happens cost a transaction per
message (~0.3 ms of Postgres CPU: the round trip, the WAL, the ledger row's
partial indexes). Instead, each outcome goes at once into the lease's journal,
a Redis list (one RPUSH, one round trip), and the pending outcomes go to
Postgres in one set-based UPDATE every FLUSH_EVERY messages, once a second,
before anything reads them (a policy pause) and at the end of the batch.

The crash window stays one message per connection:

- the journal is opened (its header pushed) *before* the claim, and the lease
  token says so (it starts with `j:`), so the reaper knows which leases have one;
- a worker that dies leaves its rows `sending`; the reaper (campaigns.ledger.reap)
  applies the lease's journal first, so a message the server accepted becomes
  `sent` (never sent again), then marks the lowest row still `sending` (the one
  that may have been on the wire without a journal entry) `unknown` and puts
  the others back in the queue — as without a journal;
- applying a journal twice is harmless: the UPDATE only touches rows still
  `sending` under that lease;
- when Redis cannot be reached at the start, the batch writes each outcome to
  Postgres directly (campaigns.ledger.record_many, one statement per outcome),
  as before; when it fails during a batch, the pending outcomes go to Postgres
  at once and the batch goes on writing directly. A worker notices that Redis lost the journal (restarted
  empty: RPUSH answers a shorter list) and writes its pending outcomes to
  Postgres at once, then starts the journal again.
- When the journal of a dead lease is gone (Redis restarted empty, or lost its
  recent writes, at about the time the worker died), nobody knows which of its
  rows went out: the reaper marks all of them `unknown` rather than risk sending
  any twice. A journal that cannot be read (Redis down) is waited for, up to
  LOST_AFTER past the lease; then the same.

The flush is committed synchronously (the batch's connection keeps
`synchronous_commit` on in journal mode): once a flush returns, a Postgres
crash cannot undo it, and the journal is deleted only after the last one.
"""

import json
import logging
import os
import time
from collections import Counter, namedtuple
from datetime import datetime, timedelta

from django.conf import settings

log = logging.getLogger(__name__)

PREFIX = "j:"  # a journaled lease's token starts with this
HEADER = b"journal-v1"  # the journal's first entry, pushed before the claim
FLUSH_EVERY = 50  # outcomes written to Postgres per statement (at 250-row claims: 5 per batch)
KEY_SECONDS = 7 * 86400  # a dead lease's journal waits this long for the reaper
LOST_AFTER = timedelta(hours=1)  # past its lease, a journal that cannot be read counts as lost
RETRY_AFTER = 5.0  # seconds without a journal after Redis failed to answer at a batch's start

# One message's outcome, as campaigns.ledger.record_many writes it.
Outcome = namedtuple("Outcome", "pk status at next_attempt_at backend_id message_id provider_id response")


class Unavailable(Exception):
    """Redis cannot be reached for the journals."""


def key(token):
    return f"ar:journal:{token}"


def is_journaled(token):
    return token.startswith(PREFIX)


def _client():
    from .ratelimit import redis_client

    return redis_client()


def _errors():
    import redis

    return (redis.RedisError, OSError)


_held = {}  # {pid: a connection of this process's own for the per-message RPUSH}
_down = {"until": 0.0}  # monotonic time until which batches start without a journal


def _rpush(name, value):
    """RPUSH on a connection kept for this process (opened again after a fork or an error):
    taking one from the pool and giving it back for every message, as the client does, was two
    thirds of the command's CPU (37 → 13 µs in a loop; 115 µs → 40 µs a message in a batch).
    A connection error is tried once more on a new connection; should the first try have been
    applied, the list is longer than expected, which add() treats as a lost journal (its
    outcomes go to Postgres at once): harmless."""
    import redis

    pid = os.getpid()
    for attempt in (1, 2):
        conn = _held.get(pid)
        if conn is None:
            _held.clear()
            conn = _held[pid] = _client().connection_pool.make_connection()
        try:
            conn.send_command("RPUSH", name, value)
            return conn.read_response()
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            conn.disconnect()
            _held.clear()
            if attempt == 2:
                raise


def begin():
    """A new lease token; journaled (its journal opened) when Redis answers."""
    from .ledger import new_lease_token

    token = new_lease_token()
    if not settings.REDIS_URL or time.monotonic() < _down["until"]:
        return token
    journaled = PREFIX + token
    try:
        pipe = _client().pipeline(transaction=False)
        pipe.rpush(key(journaled), HEADER)
        pipe.expire(key(journaled), KEY_SECONDS)
        pipe.execute()
    except _errors() as exc:
        # Not tried again for a few seconds: each try may wait for the connect timeout.
        _down["until"] = time.monotonic() + RETRY_AFTER
        log.warning("Redis cannot be reached for the send journal (%s); outcomes go to Postgres one by one.", exc)
        return token
    return journaled


def discard(token):
    """The journal of a lease that claimed nothing."""
    if is_journaled(token):
        try:
            _client().delete(key(token))
        except _errors():
            pass  # it expires


def encode(outcome):
    return json.dumps([
        outcome.pk, outcome.status, outcome.at.isoformat(),
        outcome.next_attempt_at.isoformat() if outcome.next_attempt_at else None,
        outcome.backend_id, outcome.message_id, outcome.provider_id, outcome.response,
    ], separators=(",", ":"))


def decode(raw):
    pk, status, at, next_at, backend_id, message_id, provider_id, response = json.loads(raw)
    return Outcome(pk, status, datetime.fromisoformat(at), datetime.fromisoformat(next_at) if next_at else None,
                   backend_id, message_id, provider_id, response)


def read(tokens):
    """{token: [Outcome] or None when its journal is lost}; raises Unavailable."""
    tokens = list(tokens)
    if not tokens:
        return {}
    try:
        pipe = _client().pipeline(transaction=False)
        for token in tokens:
            pipe.lrange(key(token), 0, -1)
        found = pipe.execute()
    except (*_errors(), ValueError) as exc:  # ValueError: REDIS_URL unset since
        raise Unavailable(f"Redis cannot be reached for the send journals: {exc}") from exc
    return {
        token: [decode(raw) for raw in entries[1:]] if entries and entries[0] == HEADER else None
        for token, entries in zip(tokens, found)
    }


def forget(tokens, *, after=3600):
    """Reaped journals expire soon (a later pass over the same lease reads them again)."""
    try:
        pipe = _client().pipeline(transaction=False)
        for token in tokens:
            pipe.expire(key(token), after)
        pipe.execute()
    except _errors():
        pass


class Journal:
    """The outcomes of one batch (one lease). `add()` and `flush()` return False once the
    lease turns out lost (the reaper took the rows): the batch must stop."""

    def __init__(self, token, counts=None):
        self.token = token
        self.is_journaled = is_journaled(token)
        self.pending = []  # outcomes not in Postgres yet
        self.length = 1  # entries in the Redis list, the header included
        self.counts = Counter() if counts is None else counts  # recorded outcomes by status

    def add(self, outcome):
        if not self.is_journaled:
            return self._write([outcome])
        self.pending.append(outcome)
        try:
            length = _rpush(key(self.token), encode(outcome))
        except _errors() as exc:
            log.warning("Redis failed while journaling (%s); this batch writes its outcomes to Postgres.", exc)
            self.is_journaled = False
            return self.flush()
        self.length += 1
        if length != self.length:  # Redis lost the journal (restarted empty): Postgres has it now
            log.warning("The send journal %s was lost in Redis; writing its outcomes to Postgres.", self.token)
            recorded = self.flush()
            self._restart()
            return recorded
        return self.flush() if len(self.pending) >= FLUSH_EVERY else True

    def flush(self):
        if not self.pending:
            return True
        recorded = self._write(self.pending)
        self.pending = []
        return recorded

    def close(self):
        """The rest to Postgres, then the journal is deleted (not when the write failed: the
        reaper applies it)."""
        recorded = self.flush()
        if self.is_journaled:
            discard(self.token)
        return recorded

    def _write(self, outcomes):
        from . import ledger

        recorded = ledger.record_many(outcomes, self.token)
        self.counts.update(recorded.values())
        return len(recorded) == len(outcomes)

    def _restart(self):
        try:
            pipe = _client().pipeline(transaction=False)
            pipe.delete(key(self.token))
            pipe.rpush(key(self.token), HEADER)
            pipe.expire(key(self.token), KEY_SECONDS)
            pipe.execute()
            self.length = 1
        except _errors():
            self.is_journaled = False
