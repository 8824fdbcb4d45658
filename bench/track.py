"""
make bench-track: the open pixel and the click redirect under load, and the
statistics of a big broadcast.

1. Its own database (ar_bench_track) and Redis database (BENCH_REDIS, db 8 by
   default), migrated and seeded set-based: a sent broadcast of BENCH_HTTP_MESSAGES
   messages and a few links, with a signed open and click URL for each message.
2. Gunicorn serving the app with production settings, and gunicorn serving a bare
   WSGI app that returns the same GIF, with the same options; wrk (Debian's,
   installed when missing) drives each with 50 connections over random URLs:
   bare, pixel, redirect, bare again. The buffered hits are drained into Postgres
   by a drainer running alongside, as beat would; at the end every completed
   request must be an event in Postgres.
3. A second broadcast with 1,000,000 messages and 5,000,000 events, written with
   generate_series, recounted once (campaigns.stats.rebuild), then its report
   (figures, hourly series, clicks per link, rendered as the broadcast page's
   section) is timed.

The last line is one JSON object. BENCH_KEEP=1 keeps the database.
"""

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432")
DATABASE = "ar_bench_track"
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379/8")
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
WORKERS = os.environ.get("BENCH_WORKERS", "2")
HTTP_MESSAGES = int(os.environ.get("BENCH_HTTP_MESSAGES", "20000"))
STATS_MESSAGES = int(os.environ.get("BENCH_STATS_MESSAGES", "1000000"))
STATS_EVENTS = int(os.environ.get("BENCH_STATS_EVENTS", "5000000"))
BARE_PORT, APP_PORT = 18931, 18932
# The same gunicorn for both apps. Sync workers, one per core: on the 2-core test machine gthread
# workers gave both apps more requests per second but a p99 of 150-250 ms (threads contending for the
# GIL), and more sync workers than cores only added context switches.
GUNICORN = [str(ROOT / ".venv" / "bin" / "gunicorn"), "--workers", WORKERS,
            *os.environ.get("BENCH_GUNICORN", "--worker-class sync").split(), "--log-level", "warning",
            "--backlog", "2048"]

DATA_DIR = Path(tempfile.mkdtemp(prefix="ar-bench-track-"))
(DATA_DIR / "static").mkdir()  # STATIC_ROOT in production mode (whitenoise warns when it is missing)
ENV = {
    **os.environ,
    "DEBUG": "0",
    "SECRET_KEY": "bench-track-secret-key-0123456789-abcdefghijklmnop",
    "SITE_URL": f"http://127.0.0.1:{APP_PORT}",
    "ALLOWED_HOSTS": "127.0.0.1,localhost",
    "DATABASE_URL": f"{PG}/{DATABASE}",
    "REDIS_URL": REDIS,
    "CELERY_BROKER_URL": REDIS,
    "ANYMAIL_WEBHOOK_SECRET": os.environ.get("ANYMAIL_WEBHOOK_SECRET") or "bench:not-a-secret",
    "TRACKING_BUFFER": "redis",
    "LOG_LEVEL": "WARNING",
    "DATA_DIR": str(DATA_DIR),
}
BARE_APP = '''
import base64
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(PIXEL))),
           ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private")]

def application(environ, start_response):
    start_response("200 OK", HEADERS)
    return [PIXEL]
'''
WRK_SCRIPT = '''
local paths = {}
for line in io.lines("%(paths)s") do paths[#paths + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", paths[math.random(#paths)], {["User-Agent"] = "Mozilla/5.0 (bench) AppleWebKit/605.1.15"})
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %%d %%d %%d %%d %%.3f\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status, summary.duration, latency:percentile(99) / 1000))
end
'''


def say(text):
    print(f"bench-track: {text}", flush=True)


# --- Setup -----------------------------------------------------------------------------------------


def ensure_wrk():
    if shutil.which("wrk"):
        return
    say("installing Debian's wrk")
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
                   stdout=subprocess.DEVNULL)


def recreate_database():
    import psycopg2

    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    admin.close()
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=ENV, check=True)


def drop_database():
    import psycopg2

    admin = psycopg2.connect(f"{PG}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()


def setup_django():
    os.environ.update(ENV)
    os.environ["DJANGO_SETTINGS_MODULE"] = "autoresponder.settings"
    import django

    django.setup()


def sent_broadcast(name, messages):
    """A sent broadcast with `messages` ledger rows (no subscribers: set-based and quick)."""
    from django.db import connection

    from campaigns.models import Broadcast, SenderIdentity

    sender, _ = SenderIdentity.objects.get_or_create(
        name="Bench", defaults={"from_name": "Bench", "from_email": "bench@example.com", "postal_address": "1 Road"})
    broadcast = Broadcast.objects.create(name=name, sender=sender, subject="Bench", body="<p>Bench</p>",
                                         status=Broadcast.SENT, recipients_count=messages, sent_count=messages)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO campaigns_message (broadcast_id, email, status, attempts, next_attempt_at, sent_at,"
            " leased_by, message_id, provider_id, last_response, created_at, updated_at)"
            " SELECT %s, 'reader' || n || '@example.org', 'sent', 1, now() - interval '3 days',"
            " now() - interval '3 days' + n * interval '200 microseconds', '', '', '', '250 OK', now(), now()"
            " FROM generate_series(1, %s) AS n",
            [broadcast.pk, messages],
        )
    return broadcast


def write_paths(broadcast):
    from campaigns import composing
    from campaigns.models import Message

    links = [composing.link_pk(f"https://shop.example/item/{n}?utm_source=bench") for n in range(20)]
    pks = list(Message.objects.filter(broadcast=broadcast).values_list("pk", flat=True))
    strip = len(ENV["SITE_URL"])
    opens = DATA_DIR / "opens.txt"
    clicks = DATA_DIR / "clicks.txt"
    opens.write_text("\n".join(composing.open_url(pk)[strip:] for pk in pks) + "\n")
    clicks.write_text("\n".join(composing.click_url(pk, links[pk % len(links)])[strip:] for pk in pks) + "\n")
    return opens, clicks


# --- Load ------------------------------------------------------------------------------------------


class Server:
    def __init__(self, app, port, cwd):
        self.process = subprocess.Popen(GUNICORN + ["--bind", f"127.0.0.1:{port}", app], cwd=cwd, env=ENV)
        self.port = port
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                import urllib.request

                urllib.request.urlopen(f"http://127.0.0.1:{port}/o/probe.gif", timeout=1)
                return
            except Exception as exc:  # noqa: BLE001 - any HTTP answer (even 404) means it is up
                if hasattr(exc, "code"):
                    return
                time.sleep(0.2)
        raise SystemExit(f"gunicorn on port {port} did not start")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)


def wrk(port, paths):
    script = DATA_DIR / f"wrk-{paths.stem}.lua"
    script.write_text(WRK_SCRIPT % {"paths": paths})
    result = subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{SECONDS}s", "--timeout", "5s", "-s", str(script),
         f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, check=True,
    )
    found = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+)", result.stdout)
    requests, errors, bad_status, duration_us, p99_ms = found.groups()
    requests, errors, bad_status = int(requests), int(errors), int(bad_status)
    rps = requests / (int(duration_us) / 1e6)
    return {"requests": requests, "errors": errors, "bad_status": bad_status, "rps": round(rps, 1),
            "p99_ms": round(float(p99_ms), 2)}


class Drainer(threading.Thread):
    """Beat's drain task, run continuously alongside the load."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self):
        from django.db import connection

        from campaigns import events

        while not self.stopping.is_set():
            if not events.drain(seconds=2):
                time.sleep(0.5)
        connection.close()


def http_run(opens, clicks):
    bare_dir = DATA_DIR / "bare"
    bare_dir.mkdir()
    (bare_dir / "bare_app.py").write_text(BARE_APP)
    results = {}
    for label, app, port, cwd, paths in (
        ("bare", "bare_app:application", BARE_PORT, bare_dir, opens),
        ("open", "autoresponder.wsgi:application", APP_PORT, ROOT, opens),
        ("click", "autoresponder.wsgi:application", APP_PORT, ROOT, clicks),
        ("bare2", "bare_app:application", BARE_PORT, bare_dir, opens),
    ):
        server = Server(app, port, cwd)
        try:
            results[label] = wrk(port, paths)
        finally:
            server.stop()
        say(f"{label}: {results[label]}")
    return results


def wait_recorded(broadcast, expected_at_least, *, timeout=60):
    from campaigns import events
    from campaigns.models import Event

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        recorded = Event.objects.filter(scope="broadcast", scope_id=broadcast.pk).count()
        if events.pending() == 0 and recorded >= expected_at_least:
            return recorded, time.monotonic() - started
        time.sleep(0.5)
    return Event.objects.filter(scope="broadcast", scope_id=broadcast.pk).count(), None


# --- Statistics of a big broadcast ------------------------------------------------------------------

# 5,000,000 events over 1,000,000 messages and 72 hours: a delivery for every message,
# opens for 60% (several each), clicks for 20% over 20 links, bounces, complaints and
# unsubscribes; 3% of opens and clicks from scanners.
EVENTS_SQL = """
INSERT INTO campaigns_event (uid, kind, message_id, scope, scope_id, link_id, is_machine, source, detail, created_at)
SELECT md5(%(scope_id)s || ':' || n)::uuid,
       CASE WHEN n <= %(messages)s THEN 'delivered'
            WHEN n <= %(messages)s + 20000 THEN 'bounce'
            WHEN n <= %(messages)s + 30000 THEN 'soft_bounce'
            WHEN n <= %(messages)s + 31000 THEN 'complaint'
            WHEN n <= %(messages)s + 36000 THEN 'unsubscribe'
            WHEN n %% 4 = 0 THEN 'click' ELSE 'open' END,
       %(first)s + ((n * 7919) %% %(messages)s),
       'broadcast', %(scope_id)s,
       CASE WHEN n > %(messages)s + 36000 AND n %% 4 = 0 THEN %(link0)s + (n %% 20) END,
       n %% 33 = 0 AND n > %(messages)s + 36000, 'bench', '',
       now() - interval '72 hours' + (n %% 259200) * interval '1 second'
  FROM generate_series(1::bigint, %(events)s::bigint) AS n
"""


def stats_run():
    from django.db import connection
    from django.template.loader import render_to_string

    from campaigns import composing, stats
    from campaigns.models import Broadcast, Link, Message
    from campaigns.templatetags.tracking import broadcast_report

    started = time.monotonic()
    broadcast = sent_broadcast("Big broadcast", STATS_MESSAGES)
    first = Message.objects.filter(broadcast=broadcast).order_by("pk").values_list("pk", flat=True).first()
    for n in range(20):
        composing.link_pk(f"https://shop.example/item/{n}?utm_source=bench")
    link0 = Link.objects.order_by("pk").values_list("pk", flat=True).first()
    with connection.cursor() as cursor:
        # Seeding only: skip the per-row foreign-key checks (the ids are made to exist).
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(EVENTS_SQL, {"scope_id": broadcast.pk, "messages": STATS_MESSAGES, "first": first,
                                    "link0": link0, "events": STATS_EVENTS})
        cursor.execute("SET session_replication_role = DEFAULT")
        cursor.execute("ANALYZE campaigns_event")
        cursor.execute("ANALYZE campaigns_message")
    seeded = time.monotonic() - started
    say(f"seeded {STATS_MESSAGES:,} messages and {STATS_EVENTS:,} events in {seeded:.0f} s")
    started = time.monotonic()
    stats.rebuild("broadcast", broadcast.pk)
    say(f"recounted the broadcast's rollups from its events in {time.monotonic() - started:.1f} s")
    broadcast = Broadcast.objects.get(pk=broadcast.pk)
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        html = render_to_string("campaigns/broadcasts/_tracking_report.html", broadcast_report(broadcast))
        timings.append((time.perf_counter() - started) * 1000)
    figures = stats.broadcast_stats(broadcast)
    say(f"report: {figures['sent']:,} sent, {figures['opens']:,} opens ({figures['unique_opens']:,} people), "
        f"{figures['clicks']:,} clicks; {len(html):,} bytes of HTML; times {[round(t, 1) for t in timings]} ms")
    return statistics.median(timings)


# --- Main ----------------------------------------------------------------------------------------------


def clear_buffer():
    import redis

    client = redis.Redis.from_url(REDIS)
    client.delete("campaigns:events", "campaigns:events:processing", "campaigns:events:drain-lock")


def main():
    ensure_wrk()
    say(f"database {DATABASE}, Redis {REDIS}, {WORKERS} gunicorn workers, {CONNECTIONS} connections, {SECONDS} s runs")
    recreate_database()
    setup_django()
    clear_buffer()
    try:
        broadcast = sent_broadcast("HTTP broadcast", HTTP_MESSAGES)
        opens, clicks = write_paths(broadcast)
        drainer = Drainer()
        drainer.start()
        results = http_run(opens, clicks)
        # Every request the app answered must become an event (a request still in flight when
        # wrk stops is answered and recorded, but not counted by wrk: recorded may exceed it by that).
        answered = sum(results[k]["requests"] for k in ("open", "click"))
        recorded, waited = wait_recorded(broadcast, answered)
        drainer.stopping.set()
        drainer.join(timeout=30)
        say(f"events in Postgres: {recorded:,} for {answered:,} answered requests; "
            + (f"all stored {waited:.1f} s after the last request" if waited is not None else "NOT all stored"))
        stats_ms = stats_run()
    finally:
        clear_buffer()
        if not os.environ.get("BENCH_KEEP"):
            from django.db import connections

            connections.close_all()
            drop_database()
        shutil.rmtree(DATA_DIR, ignore_errors=True)
    bare = statistics.mean([results["bare"]["rps"], results["bare2"]["rps"]])
    open_rps, click_rps = results["open"]["rps"], results["click"]["rps"]
    summary = {
        "bench": "track", "open_rps": open_rps, "click_rps": click_rps, "bare_rps": round(bare, 1),
        "ratio": round(min(open_rps, click_rps) / bare, 3),
        "p99_ms": max(results["open"]["p99_ms"], results["click"]["p99_ms"]),
        "requests": answered, "recorded": recorded, "stats_ms": round(stats_ms, 1),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
