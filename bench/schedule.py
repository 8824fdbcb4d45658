"""
make bench-schedule: the sequence scheduler over BENCH_ENROLLMENTS enrollments
(default 1,000,000) of which BENCH_DUE_PERCENT (default 10 %) are due, spread over
four steps and eight time zones.

Measured in its own database (ar_bench_schedule, created, migrated and dropped
here; BENCH_KEEP=1 keeps it for EXPLAIN work):

- one scheduler pass (campaigns.scheduler.run) that turns every due step into a
  queued ledger row and advances every due enrollment: due rows per second;
- the same pass again with nothing due (median of BENCH_IDLE_REPEATS): ms;
- the baseline, in the same run: the obvious ORM loop (per enrollment: check
  the subscription and suppression, create the Message, save the enrollment)
  over BENCH_BASELINE due enrollments of a second sequence, so the ratio
  compares like with like on this machine at this moment;
- the periodic discovery (who is subscribed and not yet enrolled: an anti-join
  over the whole list), which runs at most every SEQUENCE_DISCOVERY_SECONDS.

The last line printed is exactly {"bench": "schedule", "enrollments", "due",
"due_per_s", "idle_pass_ms"}; the line before it holds the details.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from common import SERVER, backend_cpu, environment, insert_select, setup_django

DATABASE = "ar_bench_schedule"
ENROLLMENTS = int(os.environ.get("BENCH_ENROLLMENTS", 1_000_000))
DUE_PERCENT = int(os.environ.get("BENCH_DUE_PERCENT", 10))
BASELINE = int(os.environ.get("BENCH_BASELINE", 2_000))
IDLE_REPEATS = int(os.environ.get("BENCH_IDLE_REPEATS", 20))
ZONES = ["", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Europe/London", "America/Los_Angeles",
         "Australia/Sydney", "Asia/Kolkata"]


def log(message):
    print(message, file=sys.stderr, flush=True)


def recreate_database():
    import psycopg2

    admin = psycopg2.connect(f"{SERVER}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        cursor.execute(f"CREATE DATABASE {DATABASE}")
    admin.close()


def drop_database():
    import psycopg2
    from django.db import connections

    connections.close_all()
    admin = psycopg2.connect(f"{SERVER}/postgres")
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    admin.close()


# --- Data ------------------------------------------------------------------------------------------


def build(count, *, prefix, due_percent):
    """A list with `count` confirmed subscribers, a five-step sequence and `count` enrollments."""
    from django.db import connection
    from django.utils import timezone

    from campaigns import sequences
    from campaigns.models import Enrollment, SenderIdentity, Sequence
    from lists.models import MailingList, Subscriber, Subscription

    mailing_list = MailingList.objects.create(name=f"Bench {prefix}", from_email="news@bench.example")
    sender = SenderIdentity.objects.get_or_create(
        name="Bench", defaults={"from_name": "Bench", "from_email": "news@bench.example",
                                "postal_address": "1 Bench Road, Benchtown"})[0]
    sequence = sequences.create_sequence(name=f"Welcome {prefix}", mailing_list=mailing_list, sender=sender,
                                         enroll_existing=True)
    body = '<p>Hello {{ subscriber.first_name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a> ' \
           '{{ sender.postal_address }}</p>'
    steps = [sequences.add_step(sequence, subject=f"Step {n}", body=body, delay_amount=0 if n == 1 else 2,
                                delay_unit="days") for n in range(1, 6)]
    Sequence.objects.filter(pk=sequence.pk).update(status=Sequence.ACTIVE, activated_at=timezone.now())
    sequence.refresh_from_db()
    zones = "ARRAY[" + ", ".join(f"'{z}'" for z in ZONES) + "]"
    started = Subscriber.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    with connection.cursor() as cursor:
        insert_select(cursor, Subscriber, {
            "email": f"'{prefix}' || g || '@bench.example'", "name": "'Bench ' || g",
            "time_zone": f"({zones})[1 + g % {len(ZONES)}]", "status": "'active'",
        }, f"generate_series(1, {count}) g")
        insert_select(cursor, Subscription, {
            "subscriber_id": "s.id", "mailing_list_id": str(mailing_list.pk), "status": "'confirmed'",
            "source": "'import'", "confirmed_at": "now() - interval '20 days'",
        }, f"lists_subscriber s WHERE s.id > {started}")
        # Due rows (id % 100 < due_percent) waited up to an hour; the others come due in 1 to 2 days.
        # Positions 1–4 spread the due rows over steps 2–5.
        step_ids = "ARRAY[" + ", ".join(str(s.pk) for s in steps) + "]"
        due = f"(s.id % 100) < {due_percent}"
        insert_select(cursor, Enrollment, {
            "sequence_id": str(sequence.pk), "subscriber_id": "s.id", "status": "'active'", "source": "'subscribe'",
            "entry": "1", "position": "1 + s.id % 4", "last_step_id": f"({step_ids})[1 + s.id % 4]",
            "last_step_at": "now() - interval '2 days'", "next_step_id": f"({step_ids})[2 + s.id % 4]",
            "next_step_at": f"CASE WHEN {due} THEN now() - (s.id % 3600) * interval '1 second' "
                            f"ELSE now() + interval '1 day' + (s.id % 86400) * interval '1 second' END",
            "entered_at": "now() - interval '3 days'",
        }, f"lists_subscriber s WHERE s.id > {started}")
    return sequence


def reset_due(sequence, now):
    """Put the due enrollments back as they were before the pass, and empty the ledger."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM campaigns_message")
        cursor.execute(
            "UPDATE campaigns_enrollment e SET status = 'active', ended_at = NULL, position = p.position - 1,"
            " next_step_id = p.id, next_step_at = %s - (e.subscriber_id %% 3600) * interval '1 second',"
            " last_step_id = (SELECT id FROM campaigns_step q WHERE q.sequence_id = e.sequence_id"
            "                 AND q.position = p.position - 1)"
            " FROM campaigns_step p WHERE p.id = e.last_step_id AND e.sequence_id = %s AND e.last_step_at = %s",
            [now, sequence.pk, now],
        )
    analyze()


def cpu_seconds():
    """(this process's CPU seconds, its Postgres backend's CPU seconds): a cost that does not
    depend on what else the machine is doing, unlike the wall-clock rates."""
    return time.process_time(), backend_cpu()


def analyze():
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("lists_subscriber", "lists_subscription", "campaigns_enrollment", "campaigns_message"):
            cursor.execute(f"VACUUM ANALYZE {table}")


# --- Measurements ---------------------------------------------------------------------------------------


def naive_pass(sequence, now):
    """The baseline: one ORM round per due enrollment, as a first version would do it."""
    from django.db import transaction

    from campaigns.models import Enrollment, Message
    from lists.models import Subscription, Suppression

    steps = {s.pk: s for s in sequence.steps.all()}
    done = 0
    due = Enrollment.objects.filter(sequence=sequence, status=Enrollment.ACTIVE, next_step_at__lte=now)
    for enrollment in due.select_related("subscriber").iterator():
        with transaction.atomic():
            subscriber = enrollment.subscriber
            if not Subscription.objects.filter(subscriber=subscriber, mailing_list_id=sequence.mailing_list_id,
                                               status=Subscription.CONFIRMED).exists():
                continue
            if Suppression.objects.filter(email=subscriber.email.lower()).exists():
                continue
            step = steps[enrollment.next_step_id]
            Message.objects.get_or_create(subscriber=subscriber, step=step, entry=enrollment.entry, defaults={
                "email": subscriber.email, "next_attempt_at": now})
            following = next((s for s in sorted(steps.values(), key=lambda s: s.position)
                              if s.position > step.position), None)
            enrollment.position, enrollment.last_step, enrollment.last_step_at = step.position, step, now
            enrollment.next_step = following
            enrollment.next_step_at = now + timedelta(days=2) if following else None
            enrollment.save()
            done += 1
    return done


def main():
    data_dir = Path(tempfile.mkdtemp(prefix="bench-schedule-"))
    recreate_database()
    os.environ.update(environment(DATABASE, data_dir))
    setup_django()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from campaigns import scheduler, sequences
    from campaigns.models import Message

    call_command("migrate", verbosity=0)
    log(f"Building {ENROLLMENTS:,} enrollments ({DUE_PERCENT} % due) and a {BASELINE:,}-enrollment baseline…")
    started = time.perf_counter()
    main_sequence = build(ENROLLMENTS, prefix="main", due_percent=DUE_PERCENT)
    baseline_sequence = build(BASELINE, prefix="base", due_percent=100)
    analyze()
    log(f"  built in {time.perf_counter() - started:.1f} s")
    with connection.cursor() as cursor:  # the scheduler's clock: just after the data was written
        cursor.execute("SELECT now() + interval '1 second'")
        now = cursor.fetchone()[0]

    # Discovery first (it runs at most once a minute; every subscriber here is already enrolled).
    started = time.perf_counter()
    entered = sequences.discover(main_sequence, now=now, every=0)
    discovery_ms = (time.perf_counter() - started) * 1000
    sequences.discover(baseline_sequence, now=now, every=0)
    log(f"Discovery over {ENROLLMENTS:,} subscriptions: {discovery_ms:.0f} ms, {entered} new")

    # The baseline pauses the main sequence so each measurement touches only its own rows.
    from campaigns.models import Sequence

    Sequence.objects.filter(pk=main_sequence.pk).update(status=Sequence.PAUSED)
    started = time.perf_counter()
    naive_done = naive_pass(baseline_sequence, now)
    naive_per_s = naive_done / (time.perf_counter() - started)
    log(f"Baseline (ORM per enrollment): {naive_done:,} in {naive_done / naive_per_s:.1f} s = {naive_per_s:,.0f}/s")
    Sequence.objects.filter(pk=main_sequence.pk).update(status=Sequence.ACTIVE)
    Sequence.objects.filter(pk=baseline_sequence.pk).update(status=Sequence.PAUSED)

    due = ENROLLMENTS * DUE_PERCENT // 100
    profiler = None
    if os.environ.get("BENCH_PROFILE") == "1":
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    result = scheduler.run(now=now)
    seconds = time.perf_counter() - started
    if profiler is not None:
        import pstats

        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(30)
    queued = Message.objects.filter(step__sequence=main_sequence, status=Message.QUEUED).count()
    due_per_s = result.queued / seconds
    log(f"Scheduler pass: {result.claimed:,} claimed, {result.queued:,} queued in {seconds:.2f} s "
        f"= {due_per_s:,.0f}/s ({result})")
    if queued != due or result.queued != due:
        log(f"MISMATCH: {due:,} due, {result.queued:,} queued by the pass, {queued:,} queued rows in the ledger")

    single_per_s = cpu_us = None
    if os.environ.get("BENCH_SINGLE", "1") == "1":
        # The same backlog again through one connection, for comparison.
        reset_due(main_sequence, now)
        from django.core.cache import cache

        cache.clear()  # the reset put rows back below the scheduler's floor: the next pass must sweep
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        single = scheduler.run_sequence(main_sequence, now=now, workers=1)
        single_per_s = single.queued / (time.perf_counter() - started)
        python_cpu, postgres_cpu = (after - before for after, before in zip(cpu_seconds(), cpu_before))
        cpu_us = 1e6 * (python_cpu + postgres_cpu) / single.queued
        log(f"Same pass on one connection: {single.queued:,} queued = {single_per_s:,.0f}/s; CPU per row "
            f"{cpu_us:.0f} µs (Python {1e6 * python_cpu / single.queued:.0f}, Postgres "
            f"{1e6 * postgres_cpu / single.queued:.0f}): {1e6 / cpu_us:,.0f}/s on one idle core")

    idle = []
    for _ in range(IDLE_REPEATS):
        started = time.perf_counter()
        again = scheduler.run(now=now + timedelta(seconds=1))
        idle.append((time.perf_counter() - started) * 1000)
        assert again.claimed == 0, again
    idle_ms = statistics.median(idle)
    log(f"Idle pass (nothing due): median {idle_ms:.1f} ms, max {max(idle):.1f} ms over {IDLE_REPEATS}")

    details = {
        "bench": "schedule-details", "pass_seconds": round(seconds, 2), "queued_rows_in_ledger": queued,
        "workers": settings.SEQUENCE_WORKERS, "one_connection_per_s": round(single_per_s) if single_per_s else None,
        "one_connection_cpu_us_per_row": round(cpu_us) if single_per_s else None,
        "baseline_orm_per_s": round(naive_per_s), "ratio_vs_orm_loop": round(due_per_s / naive_per_s, 1),
        "discovery_ms": round(discovery_ms), "idle_pass_max_ms": round(max(idle), 1),
        "batch_size": settings.SEQUENCE_BATCH_SIZE,
        "measured_at": timezone.now().isoformat(timespec="seconds"),
    }
    if os.environ.get("BENCH_KEEP") != "1":
        drop_database()
    print(json.dumps(details))
    print(json.dumps({"bench": "schedule", "enrollments": ENROLLMENTS, "due": due, "due_per_s": round(due_per_s),
                      "idle_pass_ms": round(idle_ms, 1)}))


if __name__ == "__main__":
    main()
