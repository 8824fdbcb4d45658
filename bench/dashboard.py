"""
make bench-dashboard: every dashboard page, timed on a database the size of a
grown-up mailing operation.

Seeds, set-based with generate_series, in its own database (ar_bench_dashboard,
created, migrated and dropped here; BENCH_KEEP=1 keeps it for EXPLAIN work and
BENCH_REUSE=1 then times the pages again without seeding):
BENCH_SUBSCRIBERS subscribers (default 1,000,000; created over the last year,
~20 % on a second list, 10 % unsubscribed, 30 % tagged) and BENCH_EVENTS
tracking rows (default 10,000,000): campaigns.Event rows when that model exists,
else ledger rows (campaigns.Message) spread over 50 sent broadcasts — said in the
output as "events_kind".

Then signs in as the owner and asks every dashboard page BENCH_REQUESTS times
(default 20) through Django's test client in this process — the view, its
queries and the template, without network or WSGI server overhead. The first
request of a page runs on cold caches and is reported apart ("cold_ms"); the
p95 is over the following requests, as a user clicking around sees them. The
sign-in page (no queries) is the baseline in the same run.

The last line printed is one JSON object: {"bench": "dashboard", "pages",
"worst_p95_ms", "worst_page", …}; per-page figures go to stderr.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BASE, SERVER, environment, insert_select, setup_django

DATABASE = "ar_bench_dashboard"
SUBSCRIBERS = int(os.environ.get("BENCH_SUBSCRIBERS", 1_000_000))
EVENTS = int(os.environ.get("BENCH_EVENTS", 10_000_000))
REQUESTS = int(os.environ.get("BENCH_REQUESTS", 20))
BROADCASTS = 50
MESSAGES_PER_BROADCAST = 20_000  # the ledger under the events: 1,000,000 rows in all
LISTS = 5
TARGET_MS = 300


def log(message):
    print(message, file=sys.stderr, flush=True)


def _psql(sql):
    subprocess.run(["psql", SERVER + "/postgres", "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   stdout=subprocess.DEVNULL)


# --- Seeding: one INSERT … SELECT … generate_series per table ---------------------------------


def _sql(cursor, sql, params=None):
    started = time.perf_counter()
    cursor.execute(sql, params)
    return time.perf_counter() - started


def seed():
    from django.apps import apps
    from django.contrib.auth import get_user_model
    from django.db import connection

    from autoresponder.roles import grant
    from campaigns.models import Backend, Broadcast, Layout, SenderIdentity, Template
    from lists.models import MailingList, Segment, Subscriber, Subscription, Tag

    owner = get_user_model().objects.create_user("owner", password="bench-password-1234")
    grant(owner, "owner")
    lists = [MailingList.objects.create(name=f"Newsletter {n}", opt_in="double") for n in range(LISTS)]
    tags = Tag.objects.bulk_create(Tag(name=f"tag-{n}") for n in range(10))
    Segment.objects.create(name="Pro plan", conditions=[{"field": "attributes.plan", "op": "is", "value": "pro"}])
    sender = SenderIdentity.objects.create(name="Shop", from_name="Shop", from_email="news@shop.example",
                                           postal_address="1 Market Street")
    backend = Backend.objects.create(name="Relay", kind=Backend.SMTP, host="127.0.0.1", window_limit=500_000)
    layout = Layout.objects.create(name="Plain", html="<html><body>{{ content }}</body></html>")
    for n in range(20):
        Template.objects.create(name=f"Template {n}", subject="Hello {{ subscriber.name }}",
                                body="<p>Hi</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>", layout=layout)
    timings = {}
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
        first, second = lists[0].pk, lists[1].pk
        timings["subscribers"] = insert_select(cursor, Subscriber, {
            "email": "'reader' || n || '@' || (ARRAY['gmail.com','example.org','mail.de','proton.me'])[1 + n % 4]",
            "name": "'Reader ' || n",
            "attributes": "jsonb_build_object('plan', (ARRAY['free','pro','business'])[1 + n % 3], "
                          "'country', (ARRAY['DE','FR','US','GB'])[1 + n % 4])",
            "status": "'active'",
            # spread over the last year, oldest first, so ids and created_at grow together
            "created_at": f"now() - interval '365 days' + (n * interval '365 days' / {SUBSCRIBERS})",
            "updated_at": "now()",
        }, f"generate_series(1, {SUBSCRIBERS}) AS n")
        timings["subscriptions"] = insert_select(cursor, Subscription, {
            "subscriber_id": "s.id",
            "mailing_list_id": f"CASE WHEN s.id % 5 = 0 THEN {second} ELSE {first} END",
            "status": "CASE WHEN s.id % 10 = 0 THEN 'unsubscribed' WHEN s.id % 20 = 1 THEN 'unconfirmed' "
                      "ELSE 'confirmed' END",
            "source": "'import'", "created_at": "s.created_at", "updated_at": "s.created_at",
            "unsubscribed_at": "CASE WHEN s.id % 10 = 0 THEN s.created_at + interval '3 days' END",
        }, f"{Subscriber._meta.db_table} AS s")
        timings["second_list"] = insert_select(cursor, Subscription, {
            "subscriber_id": "s.id", "mailing_list_id": str(lists[2].pk), "status": "'confirmed'",
            "source": "'form'", "created_at": "s.created_at", "updated_at": "s.created_at",
        }, f"{Subscriber._meta.db_table} AS s WHERE s.id % 5 = 1")
        through = Subscriber.tags.through._meta.db_table
        timings["tags"] = _sql(cursor, f"INSERT INTO {through} (subscriber_id, tag_id) SELECT id, "
                                       f"{tags[0].pk} + id % 10 FROM {Subscriber._meta.db_table} WHERE id % 10 < 3")
    broadcasts = [Broadcast.objects.create(
        name=f"Broadcast {n}", sender=sender, subject="News {{ subscriber.name }}", body="<p>News</p>",
        status=Broadcast.SENT, backend=backend) for n in range(BROADCASTS)]
    for broadcast in broadcasts:
        broadcast.lists.set([lists[0]])
    draft = Broadcast.objects.create(name="Draft", sender=sender, subject="Soon", body="<p>Soon</p>")
    draft.lists.set([lists[0]])
    kind = "events" if _has_model(apps, "campaigns", "Event") else "messages"
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
        timings[kind] = _seed_tracking(cursor, kind, broadcasts, backend)
        log("vacuuming…")
        # What autovacuum does to a table that size in production: statistics for the planner and the
        # visibility map that lets counts run as index-only scans.
        timings["vacuum"] = _sql(cursor, "VACUUM ANALYZE")
    return timings, kind, owner


def _kept():
    """(events kind, owner) of a database seeded by an earlier run."""
    from django.apps import apps
    from django.contrib.auth import get_user_model

    has_events = _has_model(apps, "campaigns", "Event") and apps.get_model("campaigns", "Event").objects.exists()
    return ("events" if has_events else "messages"), get_user_model().objects.get(username="owner")


def _has_model(apps, app, name):
    try:
        apps.get_model(app, name)
    except LookupError:
        return False
    return True


def _seed_tracking(cursor, kind, broadcasts, backend):
    """EVENTS tracking rows: ledger rows alone (EVENTS of them, one per subscriber and broadcast), or
    EVENTS events over a ledger of MESSAGES_PER_BROADCAST rows per broadcast, then the rollups."""
    from campaigns.models import Broadcast, Message

    per_broadcast = min(SUBSCRIBERS, EVENTS // len(broadcasts) if kind == "messages" else MESSAGES_PER_BROADCAST)
    started = time.perf_counter()
    for broadcast in broadcasts:
        insert_select(cursor, Message, {
            "broadcast_id": str(broadcast.pk), "subscriber_id": "s.id", "email": "s.email",
            "status": "CASE WHEN s.id % 500 = 0 THEN 'failed' WHEN s.id % 5000 = 1 THEN 'unknown' ELSE 'sent' END",
            "attempts": "1", "next_attempt_at": "now()", "backend_id": str(backend.pk),
            "sent_at": f"now() - interval '{broadcast.pk % 60} days'", "created_at": "now()", "updated_at": "now()",
            "last_response": "CASE WHEN s.id % 500 = 0 THEN '550 5.1.1 no such user' ELSE '' END",
        }, f"(SELECT id, email FROM lists_subscriber ORDER BY id LIMIT {per_broadcast}) AS s")
        Broadcast.objects.filter(pk=broadcast.pk).update(
            recipients_count=per_broadcast, sent_count=per_broadcast * 998 // 1000, failed_count=per_broadcast // 500)
    if kind == "events":
        _seed_events(cursor, broadcasts, per_broadcast)
    return time.perf_counter() - started


def _seed_events(cursor, broadcasts, per_broadcast):
    """EVENTS events spread over the ledger rows (whose ids are consecutive, broadcast by broadcast),
    mostly opens, clicks and deliveries, some bounces and complaints; then each broadcast's rollups."""
    from campaigns import stats
    from campaigns.models import Event, Message

    first_message = Message.objects.order_by("pk").values_list("pk", flat=True).first()
    total = per_broadcast * len(broadcasts)
    kinds = ["delivered", "delivered", "open", "open", "open", "click", "open", "click", "unsubscribe", "bounce"] * 99
    kinds += ["complaint"] * 10  # 1 in 1,000: over the 0.1 % line, as a warning on the overview
    kinds_sql = "ARRAY[" + ",".join(f"'{k}'" for k in kinds) + "]"
    offset = "(n % {total})".format(total=total)
    insert_select(cursor, Event, {
        "uid": "md5('bench' || n)::uuid", "kind": f"({kinds_sql})[1 + n % {len(kinds)}]",
        "message_id": f"{first_message} + {offset}", "scope": "'broadcast'",
        "scope_id": f"{broadcasts[0].pk} + {offset} / {per_broadcast}",
        "is_machine": "n % 50 = 0", "source": "'pixel'", "detail": "''",
        "created_at": "now() - (n % 1440) * interval '1 hour'",
    }, f"generate_series(1, {EVENTS}) AS n")
    for broadcast in broadcasts:
        stats.rebuild(stats.BROADCAST, broadcast.pk)


# --- The pages ---------------------------------------------------------------------------------


def pages():
    """(label, url) for every dashboard page a person opens, with realistic filters."""
    from django.contrib.auth import get_user_model
    from django.urls import NoReverseMatch, reverse

    from campaigns.models import Backend, Broadcast, Layout, SenderIdentity, Template
    from lists.models import MailingList, Segment, Subscriber, Tag

    big = MailingList.objects.order_by("pk").first()
    subscriber = Subscriber.objects.order_by("-pk").first()
    broadcast = Broadcast.objects.filter(status=Broadcast.SENT).order_by("-pk").first()
    draft = Broadcast.objects.get(status=Broadcast.DRAFT)
    member = get_user_model().objects.order_by("pk").first()
    sequence, hook = _workflow_objects(big, draft.sender, member)
    wanted = [
        ("overview", "home", {}), ("lists", "lists:list_index", {}),
        ("list (1M members)", "lists:list_detail", {"pk": big.pk}), ("list edit", "lists:list_edit", {"pk": big.pk}),
        ("import", "lists:import_start", {"pk": big.pk}),
        ("subscribers", "lists:subscriber_index", {}),
        ("subscriber", "lists:subscriber_detail", {"pk": subscriber.pk}),
        ("subscriber edit", "lists:subscriber_edit", {"pk": subscriber.pk}),
        ("segments", "lists:segment_index", {}), ("segment", "lists:segment_edit", {"pk": Segment.objects.first().pk}),
        ("broadcasts", "campaigns:broadcast_index", {}), ("compose", "campaigns:broadcast_create", {}),
        ("broadcast report", "campaigns:broadcast_detail", {"pk": broadcast.pk}),
        ("broadcast progress", "campaigns:broadcast_progress", {"pk": broadcast.pk}),
        ("draft edit (1M recipients)", "campaigns:broadcast_edit", {"pk": draft.pk}),
        ("draft review and send", "campaigns:broadcast_send", {"pk": draft.pk}),
        # loaded by htmx after the page; "cold" is the count itself, the rest come from the cache
        ("draft recipients (htmx)", "campaigns:broadcast_count", {"pk": draft.pk}),
        ("templates", "campaigns:template_index", {}),
        ("template", "campaigns:template_detail", {"pk": Template.objects.first().pk}),
        ("template edit", "campaigns:template_edit", {"pk": Template.objects.first().pk}),
        ("layout edit", "campaigns:layout_edit", {"pk": Layout.objects.first().pk}),
        ("sending", "campaigns:backend_index", {}), ("backend", "campaigns:backend_detail", {"pk": Backend.objects.first().pk}),
        ("sender edit", "campaigns:sender_edit", {"pk": SenderIdentity.objects.first().pk}),
        ("settings", "settings", {}), ("outbox", "outbox", {}), ("account", "account", {}), ("API", "api_tokens", {}),
        ("users", "user_index", {}), ("user", "user_detail", {"pk": member.pk}),
        ("sequences", "campaigns:sequence_index", {}), ("sequence", "campaigns:sequence_detail", {"pk": sequence.pk}),
        ("step edit", "campaigns:step_edit", {"pk": sequence.pk, "step_pk": sequence.steps.first().pk}),
        ("hooks", "campaigns:hook_index", {}), ("hook", "campaigns:hook_detail", {"pk": hook.pk}),
        ("bounce policy", "campaigns:bounce_policy", {}),
    ]
    found = []
    for label, name, kwargs in wanted:
        try:
            found.append((label, reverse(name, kwargs=kwargs)))
        except NoReverseMatch:
            log(f"  ({label}: no such page yet)")
    subscribers = reverse("lists:subscriber_index")
    found += [
        ("subscribers: search gmail", f"{subscribers}?q=gmail"),
        ("subscribers: search one address", f"{subscribers}?q=reader{SUBSCRIBERS // 2}@"),
        ("subscribers: attribute plan:pro", f"{subscribers}?q=plan:pro"),
        ("subscribers: list + confirmed", f"{subscribers}?list={big.pk}&status=confirmed"),
        ("subscribers: tag", f"{subscribers}?tag={Tag.objects.first().name}"),
        ("subscribers: page 2", f"{subscribers}?after={subscriber.pk - 50}"),
    ]
    return found


def _workflow_objects(mailing_list, sender, owner):
    """A three-step sequence on the big list and a REST hook (made once; a kept database gets them too)."""
    from campaigns.models import Hook, Sequence, Step

    sequence = Sequence.objects.filter(name="Welcome").first()
    if sequence is None:
        sequence = Sequence.objects.create(name="Welcome", mailing_list=mailing_list, sender=sender)
        for position, delay in enumerate((0, 2, 5), start=1):
            Step.objects.create(sequence=sequence, position=position, delay_amount=delay, subject=f"Step {position}",
                                body="<p>Hi</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>")
    hook, _ = Hook.objects.get_or_create(event="subscriber.created", target="https://crm.example/hooks",
                                         defaults={"owner": owner})
    return sequence, hook


def time_pages(owner):
    from django.test import Client

    client = Client()
    client.force_login(owner)
    results = []
    baseline = _measure(Client(), "/accounts/login/")
    for label, url in pages():
        results.append((label, url, *_measure(client, url)))
        cold, p95, median = results[-1][2:]
        flag = "" if p95 < TARGET_MS else "  <-- over target"
        log(f"  {label:<34} p95 {p95:7.1f} ms  median {median:7.1f} ms  cold {cold:7.1f} ms{flag}")
    return results, baseline


def _measure(client, url):
    """(first request ms, p95 ms, median ms) over REQUESTS requests after the first."""
    def one():
        started = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url} answered {response.status_code}")
        return elapsed

    cold = one()
    times = sorted(one() for _ in range(REQUESTS))
    p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
    return round(cold, 1), round(p95, 1), round(statistics.median(times), 1)


def main():
    started = time.perf_counter()
    data_dir = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    os.environ.update(environment(DATABASE, data_dir, SITE_URL="http://testserver", ALLOWED_HOSTS="testserver",
                                  CELERY_TASK_ALWAYS_EAGER="1"))
    log(f"database {DATABASE}: {SUBSCRIBERS:,} subscribers, {EVENTS:,} tracking rows")
    reuse = os.environ.get("BENCH_REUSE") == "1"  # time the pages of a database kept by BENCH_KEEP=1
    if not reuse:
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"CREATE DATABASE {DATABASE}")
    try:
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=BASE, check=True)
        # DEBUG=0 as in production: templates cached, hashed static names from the manifest
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=BASE, check=True)
        setup_django()
        if reuse:
            kind, owner = _kept()
        else:
            timings, kind, owner = seed()
            log("seeded in " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
        results, baseline = time_pages(owner)
    finally:
        if "django" in sys.modules and sys.modules["django"].apps.apps.ready:
            from django.db import connections

            connections.close_all()
        if os.environ.get("BENCH_KEEP") != "1" and not reuse:
            _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    worst = max(results, key=lambda r: r[3])
    worst_cold = max(results, key=lambda r: r[2])
    over = [r[0] for r in results if r[3] >= TARGET_MS]
    log(f"baseline (sign-in page, no queries): p95 {baseline[1]} ms; pages over {TARGET_MS} ms p95: {over or 'none'}")
    print(json.dumps({
        "bench": "dashboard", "pages": len(results), "worst_p95_ms": worst[3], "worst_page": worst[0],
        "worst_cold_ms": worst_cold[2], "worst_cold_page": worst_cold[0], "baseline_p95_ms": baseline[1],
        "worst_to_baseline": round(worst[3] / baseline[1], 1) if baseline[1] else None,
        "pages_over_target": len(over), "subscribers": SUBSCRIBERS, "events": EVENTS, "events_kind": kind,
        "seconds": round(time.perf_counter() - started),
    }))


if __name__ == "__main__":
    main()
