"""
Sequences with real processes: three scheduler processes (campaigns.scheduler.tick in
a loop), Celery workers sending through the real pipeline, and the real SMTP server
of the `smtp_server` fixture, all against the test database. Time is moved forward
through SCHEDULER_CLOCK_FILE rather than slept; each delivery is stamped with the
clock of the moment it arrived.
"""

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection

from campaigns import sequences
from campaigns.models import Enrollment, Message, Sequence
from tests.factories import MailingListFactory
from tests.sending_factories import SenderFactory, backend_for
from tests.sequence_helpers import people, step_body

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SUBSCRIBERS = 1000
DELAYS = (0, 1, 1, 2, 1)  # days after the previous step
START = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
TICK = timedelta(days=1)  # the delays are whole days, so gaps measured in ticks are exact
KNOBS = {
    "SEND_LEASE_SECONDS": "20", "SEND_SLOT_TTL": "5", "SEND_CONCURRENCY": "3", "SEND_SLICE_SECONDS": "10",
    "SEND_BATCH_SIZE": "100", "SEQUENCE_DISCOVERY_SECONDS": "0", "SEQUENCE_BATCH_SIZE": "400",
}


def _database_url():
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _start(command, env, log):
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(processes):
    """SIGTERM to all at once, then wait (a Celery warm shutdown takes a few seconds)."""
    running = [p for p in processes if p.poll() is None]
    for process in running:
        os.killpg(process.pid, signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def set_clock(path, when):
    """Move the processes' clock atomically: a reader never sees a half-written file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(when.isoformat())
    os.replace(tmp, path)


@pytest.fixture
def clock(tmp_path, monkeypatch):
    path = tmp_path / "clock"
    path.write_text(START.isoformat())
    monkeypatch.setenv("SCHEDULER_CLOCK_FILE", str(path))  # the test's own service calls too
    return path


@pytest.fixture
def cluster(tmp_path, clock):
    """Three scheduler processes and a Celery worker (3 processes), started on demand."""
    import redis
    from django.conf import settings

    from autoresponder.celery import app

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # our own broker database only
    eager, app.conf.task_always_eager = app.conf.task_always_eager, False
    log = open(tmp_path / "processes.log", "ab")
    reports = tmp_path / "reports"
    reports.mkdir()
    env = {**os.environ, **KNOBS, "DATABASE_URL": _database_url(), "CELERY_TASK_ALWAYS_EAGER": "0",
           "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING", "SCHEDULER_CLOCK_FILE": str(clock),
           "SCHEDULER_REPORT_DIR": str(reports)}
    processes = []

    def start():
        processes.append(_start([PYTHON, "-m", "celery", "-A", "autoresponder", "worker", "--pool", "prefork",
                                 "--concurrency", "3", "--without-gossip", "--without-mingle", "--without-heartbeat",
                                 "--loglevel", "WARNING"], env, log))
        for _ in range(3):
            processes.append(_start([PYTHON, "tests/scheduler_process.py"], env, log))

    start.reports = reports
    yield start
    _stop(processes)
    log.close()
    app.conf.task_always_eager = eager
    sys.stderr.write((tmp_path / "processes.log").read_text(errors="replace")[-6000:])


def _passed(reports, now):
    """Each of the three schedulers finished a pass with the clock at `now`."""
    seen = [path.read_text() for path in reports.iterdir()]
    return len(seen) == 3 and all(text == now.isoformat() for text in seen)


def _quiet(reports, now):
    """Every scheduler has seen `now`, nothing is due for them and nothing pending for the workers."""
    due = Enrollment.objects.filter(status=Enrollment.ACTIVE, next_step_at__lte=now).exists()
    pending = Message.objects.filter(status__in=(Message.QUEUED, Message.RETRY, Message.SENDING)).exists()
    return _passed(reports, now) and not due and not pending


def _wait_quiet(reports, now, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _quiet(reports, now):
            time.sleep(0.3)  # and still quiet a moment later (a pass may be committing)
            if _quiet(reports, now):
                return
        time.sleep(0.2)
    raise AssertionError(f"Not quiet after {timeout} s at {now}")


def test_1000_subscribers_5_steps_3_schedulers_and_workers_send_each_step_once_in_order(smtp_server, cluster, clock):
    # given
    backend_for(smtp_server)
    mailing_list = MailingListFactory(name="Newsletter")
    people(mailing_list, SUBSCRIBERS, confirmed_at=START - timedelta(days=1))
    # Tracking off: link rewriting is not what this test is about, and it halves the render work.
    sequence = sequences.create_sequence(name="Welcome", mailing_list=mailing_list, sender=SenderFactory(),
                                         enroll_existing=True, track_opens=False, track_clicks=False)
    for number, days in enumerate(DELAYS, start=1):
        sequences.add_step(sequence, subject=f"Step {number}", body=step_body(number), delay_amount=days,
                           delay_unit="days")
    Sequence.objects.filter(pk=sequence.pk).update(status=Sequence.ACTIVE, activated_at=START)
    cluster()
    assert cluster.reports.is_dir()
    # when time moves on a day at a time, each tick waiting until the cluster is quiet
    stamps = defaultdict(list)  # address -> [(subject, clock when it arrived)]
    seen = 0
    now = START
    while now <= START + timedelta(days=sum(DELAYS) + 1):
        set_clock(clock, now)
        _wait_quiet(cluster.reports, now)
        received = smtp_server.messages
        for message in received[seen:]:
            stamps[message.rcpt_tos[0]].append((message.message["Subject"], now))
        seen = len(received)
        now += TICK
    # then exactly 5,000 messages, in step order per subscriber, each gap at least its delay
    assert seen == SUBSCRIBERS * len(DELAYS)
    assert len(stamps) == SUBSCRIBERS
    expected = [f"Step {n}" for n in range(1, len(DELAYS) + 1)]
    for address, arrivals in stamps.items():
        assert [subject for subject, _ in arrivals] == expected, address
        gaps = [later - earlier for (_, earlier), (_, later) in zip(arrivals, arrivals[1:])]
        assert all(gap >= timedelta(days=days) for gap, days in zip(gaps, DELAYS[1:])), (address, gaps)
    assert Message.objects.filter(status="sent").count() == SUBSCRIBERS * len(DELAYS)
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.FINISHED}
