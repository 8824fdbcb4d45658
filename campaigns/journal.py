"""
A batch's outcomes: journaled in Redis at once, written to Postgres in sets.

Writing each message's outcome to Postgres as it happens cost a transaction per
message (~0.3 ms of Postgres CPU: the round trip, the WAL, the ledger row's
partial indexes). Instead, each outcome goes at once into the lease's journal,
a Redis list (one RPUSH, written without waiting for a reply and corked in the kernel
until the next check: see _Channel), and the pending outcomes go to
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
  empty: the list is shorter than what was pushed) at its next flush, before
  writing, and writes its pending outcomes to Postgres at once, then starts
  the journal again.
- When the journal of a dead lease is gone (Redis restarted empty, or lost its
  recent writes, at about the time the worker died), nobody knows which of its
  rows went out: the reaper marks all of them `unknown` rather than risk sending
  any twice. A journal that cannot be read (Redis down) is waited for, up to
  LOST_AFTER past the lease; then the same.

Corking the pushes (_Channel._cork) adds one case: if the worker's *machine* fails (not the
process: a killed worker's kernel still sends what it queued), the entries pushed since the
last check (at most FLUSH_EVERY, or a second's worth) die with it, and the reaper then puts
those accepted messages back in the queue: they go twice. A machine failure loses more than that
anyway (Redis here runs without persistence); a process crash, the case the window is about,
stays at one message per connection.

The flush is committed synchronously (the batch's connection keeps
`synchronous_commit` on in journal mode): once a flush returns, a Postgres
crash cannot undo it, and the journal is deleted only after the last one.
"""

import json
import logging
import os
import socket
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


_held = {}  # {pid: this process's _Channel}
_down = {"until": 0.0}  # monotonic time until which batches start without a journal


class _Channel:
    """This process's own Redis connection for the per-message RPUSH, with Redis's replies
    switched off (CLIENT REPLY OFF) where the server allows it.

    A blocking round trip per message was two thirds of journaling's CPU in a worker
    (the recv, the wake-up, the reply's parsing: 57-62 us a message against 40 us with the
    reply off, measured in one process over 20,000 messages). Without the reply the RPUSH
    is one write. The crash window is unchanged: a command written before the worker dies
    is in the kernel, which still delivers it and then closes the connection in order (no
    reply is ever left unread, so no reset discards it), and Redis applies it. What the
    reply told at once (the list's length: Redis restarted empty, a write refused) is
    checked at each flush instead, with replies on for that one LLEN (Journal._intact).
    A server that refuses CLIENT REPLY (a proxy) keeps the replies: one round trip a message."""

    OFF, ON = ("CLIENT", "REPLY", "OFF"), ("CLIENT", "REPLY", "ON")

    def __init__(self):
        self.conn = _client().connection_pool.make_connection()
        # No PING before a command after an idle spell (health_check_interval in REDIS_URL): with the
        # replies off its PONG would never come, and the command would wait for the socket timeout.
        self.conn.health_check_interval = 0
        self.conn.connect()
        self.quiet = self._quieten()
        self.corked = self.quiet and self._cork(True)

    def _cork(self, on):
        """TCP_CORK (Linux) on a quiet channel: a push is a copy into the kernel's send queue,
        and the queue goes to Redis in one segment at the next check (`call`), when it fills,
        or after the kernel's 200 ms at the latest. Without it every push woke Redis: 13 us of
        the worker's CPU and 17 us of Redis's a message, against 2 and 1.5 corked (measured
        here, one push every ~0.4 ms). A worker killed with pushes still queued loses none:
        closing the socket sends the queue before the FIN. What corking risks is the machine
        itself failing: the queue, at most one flush of entries, dies with its kernel."""
        sock = getattr(self.conn, "_sock", None)
        option = getattr(socket, "TCP_CORK", None)
        if option is None or sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return False
        try:
            sock.setsockopt(socket.IPPROTO_TCP, option, 1 if on else 0)  # 0 sends what is queued
        except OSError:
            return False
        return True

    def _quieten(self):
        import redis

        self.conn.send_packed_command(self.conn.pack_commands([self.OFF, self.ON]))
        try:
            self.conn.read_response()  # ON's "OK" alone when OFF was taken (OFF answers nothing)
        except redis.ResponseError:  # OFF refused: ON answers too
            try:
                self.conn.read_response()
            except redis.ResponseError:
                pass
            return False
        self.conn.send_command(*self.OFF)
        return True

    def push(self, name, value):
        """RPUSH; the list's new length, or None with the replies off."""
        self.conn.send_command("RPUSH", name, value)
        return None if self.quiet else self.conn.read_response()

    def call(self, *commands):
        """Commands whose replies are needed (replies on around them); their replies, in order."""
        import redis

        wrapped = [self.ON, *commands, self.OFF] if self.quiet else commands
        if self.corked:
            self._cork(False)  # the queued pushes go first, then these, at once
        self.conn.send_packed_command(self.conn.pack_commands(wrapped))
        replies, error = [], None
        for _ in range(len(commands) + (1 if self.quiet else 0)):  # every reply is read, errors too
            try:
                replies.append(self.conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
                error = error or exc
        if self.corked:
            self._cork(True)
        if error is not None:
            raise error
        return replies[1:] if self.quiet else replies

    def send_queued(self):
        """Send the pushes the kernel holds (corked) now; the tests' stand-in for a worker's exit."""
        if self.corked:
            self._cork(False)
            self._cork(True)


def _on_channel(use):
    """use(channel), once more on a new connection after a connection error. A push retried
    after its first try was applied after all leaves the list longer than counted, which the
    next check treats as a lost journal (its outcomes go to Postgres at once): harmless."""
    import redis

    pid = os.getpid()
    for attempt in (1, 2):
        channel = _held.get(pid)
        try:
            if channel is None:
                _held.clear()
                channel = _held[pid] = _Channel()
            return use(channel)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if channel is not None:
                channel.conn.disconnect()
            _held.clear()
            if attempt == 2:
                raise


def _open(name):
    """A journal holding its header alone, on this process's channel (which the batch's pushes then
    use: a connection Redis closed since the last batch is found and opened again here, not by a
    push that goes nowhere)."""
    _on_channel(lambda channel: channel.call(("DEL", name), ("RPUSH", name, HEADER), ("EXPIRE", name, KEY_SECONDS)))


def begin():
    """A new lease token; journaled (its journal opened) when Redis answers."""
    from .ledger import new_lease_token

    token = new_lease_token()
    if not settings.REDIS_URL or time.monotonic() < _down["until"]:
        return token
    journaled = PREFIX + token
    try:
        _open(key(journaled))
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


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # json.dumps(…, separators=…) makes one per call


def encode(outcome):
    return _ENCODER.encode([
        outcome.pk, outcome.status, outcome.at.isoformat(),
        outcome.next_attempt_at.isoformat() if outcome.next_attempt_at else None,
        outcome.backend_id, outcome.message_id, outcome.provider_id, outcome.response,
    ])


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
        self.unchecked = False  # pushed with the replies off since the last check
        self.counts = Counter() if counts is None else counts  # recorded outcomes by status

    def add(self, outcome):
        if not self.is_journaled:
            return self._write([outcome])
        self.pending.append(outcome)
        name, value = key(self.token), encode(outcome)
        try:
            length = _on_channel(lambda channel: channel.push(name, value))
        except _errors() as exc:
            log.warning("Redis failed while journaling (%s); this batch writes its outcomes to Postgres.", exc)
            self.is_journaled = False
            return self.flush()
        self.length += 1
        if length is None:
            self.unchecked = True
        elif length != self.length:
            return self._lost()
        return self.flush() if len(self.pending) >= FLUSH_EVERY else True

    def flush(self):
        """The pending outcomes to Postgres; with the replies off, the journal is checked first."""
        if not self.pending:
            return True
        if self.unchecked and not self._intact():
            return self._lost()
        recorded = self._write(self.pending)
        self.pending = []
        return recorded

    def _intact(self):
        """Whether the journal holds every entry pushed (one round trip: LLEN with the replies on)."""
        self.unchecked = False
        name = key(self.token)
        try:
            (length,) = _on_channel(lambda channel: channel.call(("LLEN", name)))
        except _errors() as exc:
            log.warning("Redis failed while journaling (%s); this batch writes its outcomes to Postgres.", exc)
            self.is_journaled = False
            return True  # not journaled any more: nothing to start again
        return length == self.length

    def _lost(self):
        """Redis lost the journal (restarted empty) or refused an entry: Postgres gets the pending
        outcomes now, and the journal starts again."""
        log.warning("The send journal %s was lost in Redis; writing its outcomes to Postgres.", self.token)
        self.unchecked = False
        recorded = self._write(self.pending)
        self.pending = []
        self._restart()
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
            _open(key(self.token))
            self.length = 1
        except _errors():
            self.is_journaled = False
