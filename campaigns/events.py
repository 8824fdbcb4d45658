"""
Recording what happened to sent messages: opens, clicks, unsubscribes,
deliveries, bounces, deferrals and complaints.

Two ways in, one way down:

- `hit(kind, message_pk, link_pk)` is what the open pixel and the click redirect
  call, thousands of times a second. With Redis configured it appends one compact
  record to a list in the process's memory; a thread pushes that list to Redis
  in one RPUSH every TRACKING_FLUSH_MS (100 ms), and the beat task `drain()`
  moves the records from Redis into Postgres in batches every couple of seconds.
  (One RPUSH per hit cost ~0.2 ms of Python in redis-py, half the cost of the
  whole request: measured in bench/track.py.) Without Redis (the embedded
  defaults) a hit is written at once.
- `record(kind, message_pk, …)` is for the rare events whose caller must know
  whether they are new — bounces and complaints (the policy acts once), ESP
  webhooks (an error must reach the ESP so it retries), unsubscribes. Written
  at once, in the caller's request or task.

Both end in `ingest(records)`: one multi-row `INSERT … ON CONFLICT (uid) DO
NOTHING RETURNING`, then the rollups (campaigns.models.StatsBucket, LinkStats)
moved by exactly the rows that were new, in the same transaction. Every record
carries a uid (random for a hit, derived from the ESP's event id or the report's
Message-ID otherwise), so a record stored twice is counted once.

The buffer's trade-off: a hit is answered before it is in Postgres. What can
be lost: a web process killed outright (SIGKILL, out of memory) loses the hits
of its last 100 ms (a graceful stop flushes them); Redis losing its memory (a
restart without persistence) loses those of the last drain interval (2 s by
default). Postgres being slow or down loses nothing — the records wait in Redis.
Delivery from Redis is at-least-once: a drainer moves a batch to a processing
list atomically, stores it, and only then drops the processing list; a drainer
that dies in between leaves the batch there for the next one, and the uids make
the second store a no-op. When Redis cannot be reached, the flusher writes the
records directly to Postgres instead.
"""

import atexit
import itertools
import logging
import os
import re
import threading
import time
import uuid
from collections import defaultdict, namedtuple
from datetime import datetime, timedelta, timezone as dt_timezone

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import stats
from .models import Event, Link, Message

log = logging.getLogger(__name__)

# `pk` is the stored row's id, known once ingest() has inserted it.
Record = namedtuple(
    "Record", "uid kind message_pk link_pk at is_machine source detail scope scope_id pk",
    defaults=(None, None, None, False, "", "", "", None, None),
)

QUEUE = "campaigns:events"
PROCESSING = "campaigns:events:processing"
DRAIN_LOCK = "campaigns:events:drain-lock"
_NAMESPACE = uuid.UUID("5b0c7a39-41c8-4d0b-9f36-8f5d8bb0a2e1")
_HIT_KINDS = {"o": Event.OPEN, "c": Event.CLICK}
_HIT_CODES = {kind: code for code, kind in _HIT_KINDS.items()}
_SOURCES = {Event.OPEN: "pixel", Event.CLICK: "redirect"}
# Link scanners and preview fetchers that announce themselves (matched in the lower-cased
# user agent). Real mail clients and the image proxies that fetch on a human's open
# (Gmail's, Apple's) are not listed. Plain substring tests: a regex alternation of these
# cost ~20 µs per hit, a third of the pixel's own work.
_SCANNER_WORDS = (
    "spider", "crawl", "preview", "scanner", "barracuda", "mimecast", "proofpoint", "forcepoint", "trendmicro",
    "trend micro", "symantec", "messagelabs", "sophos", "fireeye", "safelinks", "safe links", "urldefense",
    "ironport", "zscaler", "python-requests", "python-urllib", "curl/", "wget", "go-http-client", "okhttp",
    "libwww", "headlesschrome", "phantomjs", "facebookexternalhit", "whatsapp", "skypeuripreview",
)
_BOT = re.compile(r"(?<!cu)bot\b")  # "Googlebot/2.1", "bingbot", "Slackbot-…"; not "CUBOT" phones
# Moves up to ARGV[1] records from the queue to the processing list in one atomic step.
_TAKE = """
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items > 0 then
  redis.call('LTRIM', KEYS[1], #items, -1)
  for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[2], unpack(items, i, math.min(i + 999, #items)))
  end
end
return items
"""
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"
_clients = {}


# --- Entry points -----------------------------------------------------------------------------


def event_uid(*parts):
    """A stable uid for an event known by other ids (an ESP event id, a report's Message-ID)."""
    return uuid.uuid5(_NAMESPACE, "|".join(str(part) for part in parts))


def is_scanner(user_agent):
    if not user_agent:
        return False
    agent = user_agent.lower()
    return any(word in agent for word in _SCANNER_WORDS) or ("bot" in agent and _BOT.search(agent) is not None)


def hit(kind, message_pk, link_pk=None, *, head=False, user_agent=""):
    """An open or a click arrived at our endpoints: buffer it (or store it when there is no buffer)."""
    machine = head or is_scanner(user_agent)
    packed = _pack(kind, message_pk, link_pk, machine)
    if not buffered():
        ingest([_unpack(packed)])
    elif settings.TRACKING_FLUSH_MS > 0:
        _local.add(packed)
    else:
        _push([packed])


def _push(items):
    """RPUSH records to the Redis queue; when Redis fails, store them directly instead of losing them."""
    try:
        redis_client().rpush(QUEUE, *items)
    except Exception:  # noqa: BLE001 - any Redis failure
        log.warning("Event buffer unreachable; storing %d record(s) directly.", len(items), exc_info=True)
        ingest(parse_buffered(items))


class LocalBuffer:
    """This process's hits, pushed to Redis in one RPUSH every TRACKING_FLUSH_MS by a daemon
    thread (started on the first hit after a fork), and at exit."""

    def __init__(self):
        self.lock = threading.Lock()
        self.items = []
        self.pid = None  # the process whose flusher thread runs
        self.exit_hook = False

    def add(self, packed):
        if self.pid is None:
            self._start()
        with self.lock:
            self.items.append(packed)

    def flush(self):
        with self.lock:
            items, self.items = self.items, []
        if items:
            _push(items)
        return len(items)

    def __len__(self):
        return len(self.items)

    def _start(self):
        with self.lock:
            if self.pid is not None:
                return
            self.pid = os.getpid()
        threading.Thread(target=self._run, name="tracking-flusher", daemon=True).start()
        if not self.exit_hook:
            atexit.register(self.flush)
            self.exit_hook = True

    def forked(self):
        """In a new child process (gunicorn forks its workers): no thread yet, none of the parent's hits."""
        self.lock = threading.Lock()
        self.items = []
        self.pid = None

    def _run(self):
        while settings.TRACKING_FLUSH_MS > 0:
            time.sleep(settings.TRACKING_FLUSH_MS / 1000)
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the thread must survive; the records are logged as lost
                log.exception("Could not flush tracking records.")
        with self.lock:
            self.pid = None  # switched off (TRACKING_FLUSH_MS=0): a later hit starts a new thread
        self.flush()


_local = LocalBuffer()


def flush():
    """Push this process's buffered hits to Redis now; returns how many."""
    return _local.flush()


def record(kind, message_pk=None, *, uid=None, at=None, link_pk=None, source="", detail="", is_machine=False):
    """Store one event now; returns True when it was new (so the caller acts on it once)."""
    item = Record(
        uid=uid or uuid.uuid4(), kind=kind, message_pk=message_pk, link_pk=link_pk, at=at or timezone.now(),
        is_machine=is_machine, source=source, detail=(detail or "")[:5000],
    )
    return bool(ingest([item]))


# --- The buffer ----------------------------------------------------------------------------------


def buffered():
    return settings.TRACKING_BUFFER == "redis" and bool(settings.REDIS_URL)


def redis_client():
    url = settings.REDIS_URL
    if url not in _clients:
        import redis

        _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
    return _clients[url]


def _pack(kind, message_pk, link_pk, machine):
    """'<uid hex>|<o or c>|<message>|<link>|<unix ms>|<0 or 1>': ~60 bytes in Redis."""
    return f"{_next_uid()}|{_HIT_CODES[kind]}|{message_pk}|{link_pk or ''}|{int(time.time() * 1000)}|{int(machine)}"


_uids = {}


def _new_uid_prefix():
    _uids.update(prefix=os.urandom(8).hex(), counter=itertools.count())


def _next_uid():
    """A unique uid without a system call per hit: 64 random bits per process, then a counter."""
    return f"{_uids['prefix']}{next(_uids['counter']):016x}"


def _after_fork():
    _new_uid_prefix()
    _local.forked()


_new_uid_prefix()
os.register_at_fork(after_in_child=_after_fork)


def _unpack(item):
    text = item.decode() if isinstance(item, bytes) else item
    uid, code, message_pk, link_pk, millis, machine = text.split("|")
    kind = _HIT_KINDS[code]
    return Record(
        uid=uuid.UUID(hex=uid), kind=kind, message_pk=int(message_pk), link_pk=int(link_pk) if link_pk else None,
        at=datetime.fromtimestamp(int(millis) / 1000, tz=dt_timezone.utc), is_machine=machine == "1",
        source=_SOURCES[kind],
    )


def parse_buffered(items):
    records = []
    for item in items:
        try:
            records.append(_unpack(item))
        except (ValueError, KeyError, UnicodeDecodeError):
            log.error("Dropping a malformed event record: %r", item[:200])
    return records


def take(client, batch):
    """Move up to `batch` records from the queue to the processing list; returns them."""
    return client.eval(_TAKE, 2, QUEUE, PROCESSING, batch)


def drain(*, batch=None, seconds=None):
    """Move buffered hits into Postgres until the queue is empty or `seconds` have passed.

    One drainer at a time (a Redis lock); returns how many records were stored new.
    Records left in the processing list by a drainer that died are stored first.
    """
    if not buffered():
        return 0
    flush()  # this process's own hits first (tests, and a drainer sharing a process with web)
    batch = batch or settings.TRACKING_DRAIN_BATCH
    deadline = time.monotonic() + (settings.TRACKING_DRAIN_SECONDS * 5 if seconds is None else seconds)
    client = redis_client()
    token = uuid.uuid4().hex
    if not client.set(DRAIN_LOCK, token, nx=True, ex=120):
        return 0
    stored = 0
    try:
        stored += _settle(client)
        while time.monotonic() < deadline:
            if not take(client, batch):
                break
            stored += _settle(client)
            client.expire(DRAIN_LOCK, 120)
    finally:
        client.eval(_RELEASE, 1, DRAIN_LOCK, token)
    return stored


def _settle(client):
    """Store what is in the processing list, then drop it (only after the commit)."""
    items = client.lrange(PROCESSING, 0, -1)
    if not items:
        return 0
    stored = len(ingest(parse_buffered(items)))
    client.delete(PROCESSING)
    return stored


def pending():
    """Records waiting in the buffers (this process's, the queue and the processing list)."""
    if not buffered():
        return 0
    client = redis_client()
    return len(_local) + client.llen(QUEUE) + client.llen(PROCESSING)


# --- Storing -------------------------------------------------------------------------------------


def ingest(records):
    """Store `records` (idempotent by uid) and move the rollups by the new ones; returns those."""
    if not records:
        return []
    records = _enrich(records)
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One ingest at a time, so "first open of this message" is decided once.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        new = _insert(records)
        stats.roll_up(new)
        _announce(new)
    return new


_LOCK_KEY = 0x61727476  # "artv": campaigns.events ingest


def _enrich(records):
    """Fill in what the hot path does not know: the scope of each message, whether its list
    keeps only aggregates, and hits that came seconds after sending (a scanner)."""
    message_pks = {r.message_pk for r in records if r.message_pk}
    messages = {row[0]: row[1:] for row in _message_rows(message_pks)}
    link_pks = {r.link_pk for r in records if r.link_pk}
    links = set(Link.objects.filter(pk__in=link_pks).values_list("pk", flat=True)) if link_pks else set()
    scopes = {(scope, scope_id) for scope, scope_id, _ in messages.values()}
    private = stats.private_scopes(scopes)
    window = timedelta(seconds=settings.TRACKING_SCANNER_SECONDS)
    enriched = []
    for r in records:
        found = messages.get(r.message_pk)
        scope, scope_id, sent_at = found if found else (r.scope, r.scope_id, None)
        engagement = r.kind in (Event.OPEN, Event.CLICK)
        machine = r.is_machine or bool(engagement and sent_at and abs(r.at - sent_at) < window)
        message_pk = r.message_pk if found and not (engagement and (scope, scope_id) in private) else None
        enriched.append(r._replace(
            message_pk=message_pk, link_pk=r.link_pk if r.link_pk in links else None, is_machine=machine,
            scope=scope or "", scope_id=scope_id,
        ))
    return enriched


def _message_rows(pks):
    """(pk, scope, scope_id, sent_at) of the messages that still exist. Plain SQL on Postgres:
    the ORM's row building was a fifth of a 5,000-record drain."""
    if not pks:
        return []
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT id, broadcast_id, step_id, sent_at FROM campaigns_message WHERE id = ANY(%s)", [list(pks)]
            )
            found = cursor.fetchall()
    else:
        found = Message.objects.filter(pk__in=pks).values_list("pk", "broadcast_id", "step_id", "sent_at")
    return [
        (pk, Event.BROADCAST if broadcast_id else Event.STEP if step_id else "", broadcast_id or step_id, sent_at)
        for pk, broadcast_id, step_id, sent_at in found
    ]


_COLUMNS = ("uid", "kind", "message_id", "scope", "scope_id", "link_id", "is_machine", "source", "detail",
            "created_at")
_ROWS_PER_STATEMENT = 1000  # 10 parameters a row, well under Postgres's 65,535


def _insert(records):
    """One INSERT per 1,000 records; returns the records that were not stored before."""
    adapt = connection.ops.adapt_datetimefield_value
    by_uid = {}
    for r in records:
        by_uid.setdefault(_uid_key(r.uid), r)
    new = []
    items = list(by_uid.items())
    row_sql = "(" + ", ".join(["%s"] * len(_COLUMNS)) + ")"
    for start in range(0, len(items), _ROWS_PER_STATEMENT):
        chunk = items[start:start + _ROWS_PER_STATEMENT]
        params = []
        for key, r in chunk:
            params += [key, r.kind, r.message_pk, r.scope, r.scope_id, r.link_pk, r.is_machine, r.source,
                       r.detail, adapt(r.at)]
        sql = (
            f"INSERT INTO campaigns_event ({', '.join(_COLUMNS)}) VALUES {', '.join([row_sql] * len(chunk))}"
            " ON CONFLICT (uid) DO NOTHING RETURNING uid, id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            returned = cursor.fetchall()
        new += [by_uid[_uid_key(uid)]._replace(pk=pk) for uid, pk in returned]
    return new


def _uid_key(uid):
    """The uid as the database spells it: a uuid on Postgres, 32 hex digits on SQLite."""
    uid = uid if isinstance(uid, uuid.UUID) else uuid.UUID(str(uid))
    return str(uid) if connection.vendor == "postgresql" else uid.hex


# --- REST hooks ---------------------------------------------------------------------------------------

_HOOK_EVENTS = {
    Event.BOUNCE: "message.bounced", Event.COMPLAINT: "message.complained",
    Event.OPEN: "message.opened", Event.CLICK: "message.clicked",
}


def _announce(new):
    """Queue REST hook deliveries (campaigns.hooks) for new hard bounces, complaints and human
    opens and clicks, in the same transaction as the events. Only when a hook wants the event
    (a cached check), and never for aggregate-only opens and clicks: they name nobody."""
    from . import hooks

    wanted = defaultdict(list)
    for r in new:
        name = _HOOK_EVENTS.get(r.kind)
        if name and r.message_pk and not r.is_machine and hooks.wanted(name):
            wanted[name].append(r)
    if not wanted:
        return
    pks = {r.message_pk for records in wanted.values() for r in records}
    fields = ["pk", "email", "subscriber_id", "broadcast_id", "step_id"]
    messages = {row["pk"]: row for row in Message.objects.filter(pk__in=pks).values(*fields)}
    link_pks = {r.link_pk for r in wanted.get("message.clicked", ()) if r.link_pk}
    urls = dict(Link.objects.filter(pk__in=link_pks).values_list("pk", "url")) if link_pks else {}
    for name, records in wanted.items():
        hooks.emit_many(name, [_hook_payload(r, messages.get(r.message_pk, {}), urls) for r in records])


def _hook_payload(r, message, urls):
    payload = {
        "message": {"id": r.message_pk, "email": message.get("email"), "broadcast_id": message.get("broadcast_id"),
                    "step_id": message.get("step_id")},
        "subscriber": {"id": message.get("subscriber_id"), "email": message.get("email")},
        "at": r.at.isoformat(),
    }
    if r.kind == Event.CLICK:
        payload["url"] = urls.get(r.link_pk)
    if r.kind in (Event.BOUNCE, Event.COMPLAINT):
        payload["detail"] = r.detail
    return payload
