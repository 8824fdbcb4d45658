"""
Reliability of the pipeline with real processes: Celery workers and beat started
as subprocesses against the test database, a real SMTP sink (bench/sink.py) in
its own process, and faults injected from outside — kill -9 of the workers, an
SMTP server answering 421/451, Redis restarted empty, Postgres connections
terminated. The send must complete by itself, lose nothing and send nothing
twice (beyond the messages in flight at a kill, which are marked `unknown`).
"""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from bench.sink import read_state
from campaigns import broadcasts
from campaigns.models import Broadcast, Message
from lists.models import Subscription, Suppression
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, SMTPBackendFactory, audience
from tests.smtp import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
WORKER_PROCESSES = 3
KNOBS = {
    "SEND_LEASE_SECONDS": "10", "SEND_SLOT_TTL": "4", "SEND_KICK_SECONDS": "1",
    "SEND_CONCURRENCY": str(WORKER_PROCESSES), "SEND_SLICE_SECONDS": "10", "SEND_BATCH_SIZE": "100",
}


def start(command, env, log):
    """A subprocess in its own process group (so kill -9 reaches its children too)."""
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process, sig=signal.SIGTERM, timeout=15):
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        except ProcessLookupError:
            pass


class Cluster:
    """Workers, beat and an SMTP sink, all real processes, pointed at the test database."""

    def __init__(self, tmp_path, *, redis_url=None, broker_url=None, sink_args=()):
        self.tmp = tmp_path
        self.log = open(tmp_path / "processes.log", "ab")
        self.state = tmp_path / "sink"
        self.port = free_port()
        self.env = {
            **os.environ, **KNOBS,
            "DATABASE_URL": _database_url(),
            "CELERY_TASK_ALWAYS_EAGER": "0",
            "DATA_DIR": str(tmp_path / "data"),
            "LOG_LEVEL": "WARNING",
        }
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        if broker_url:
            self.env["CELERY_BROKER_URL"] = broker_url
        self.sink = start([PYTHON, "bench/sink.py", "--port", str(self.port), "--processes", "2",
                           "--state", str(self.state), "--record", *sink_args], self.env, self.log)
        self.workers = self.beat = None

    def start_workers(self):
        self.workers = start([PYTHON, "-m", "celery", "-A", "autoresponder", "worker", "--pool", "prefork",
                              "--concurrency", str(WORKER_PROCESSES), "--without-gossip", "--without-mingle",
                              "--without-heartbeat", "--loglevel", "WARNING"], self.env, self.log)

    def start_beat(self):
        self.beat = start([PYTHON, "-m", "celery", "-A", "autoresponder", "beat", "--loglevel", "WARNING",
                           "--schedule", str(self.tmp / "beat-schedule")], self.env, self.log)

    def kill_workers(self):
        stop(self.workers, signal.SIGKILL)

    def close(self):
        for process in (self.workers, self.beat, self.sink):
            if process is not None:
                try:
                    stop(process)
                except Exception:  # never leave the others running
                    os.killpg(process.pid, signal.SIGKILL)
        self.log.close()

    def received(self):
        return read_state(self.state)[2]


def _database_url():
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def publish_to_broker():
    """The test process rings bells through the real broker, as the web process does."""
    from autoresponder.celery import app

    was = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = was


@pytest.fixture
def cluster(tmp_path, publish_to_broker):
    import redis
    from django.conf import settings

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # our own broker database only
    made = []

    def make(**kwargs):
        made.append(Cluster(tmp_path, **kwargs))
        return made[-1]

    yield make
    for each in made:
        each.close()
    # Shown by pytest only when the test fails.
    sys.stderr.write((tmp_path / "processes.log").read_text(errors="replace")[-6000:])


def wait_until(condition, *, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"Timed out after {timeout} s waiting for {what}; {_state()}")


def _state():
    """What the ledger and the backends look like, for a failure message."""
    from collections import Counter

    from campaigns.models import Backend

    ledger_state = Counter(Message.objects.values_list("status", flat=True))
    backends = list(Backend.objects.values_list("name", "consecutive_failures", "down_until", "last_error"))
    broadcasts_state = list(Broadcast.objects.values_list("status", "pause_reason"))
    return f"ledger {dict(ledger_state)}, backends {backends}, broadcasts {broadcasts_state}"


def broadcast_to(count, port, *, prefix="reader", **backend_fields):
    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, count, prefix=prefix)
    SMTPBackendFactory(name="Sink", host="127.0.0.1", port=port, **backend_fields)
    return BroadcastFactory(lists=[newsletter])


def finished(broadcast):
    return lambda: Broadcast.objects.get(pk=broadcast.pk).status == Broadcast.SENT


def outcome(broadcast):
    return dict(Message.objects.filter(broadcast=broadcast).values_list("email", "status"))


# --- kill -9 ------------------------------------------------------------------------------------


def test_kill_9_of_the_workers_mid_send_loses_nothing_and_duplicates_at_most_one_per_process(cluster):
    # given: 10,000 subscribers and a cluster of 3 worker processes
    n, kills = 10_000, 3
    c = cluster()
    broadcast = broadcast_to(n, c.port)
    c.start_workers()
    c.start_beat()
    # when: send, and kill -9 every worker process three times at random moments
    began = time.monotonic()
    broadcasts.send_now(broadcast)
    rng = random.Random(4)
    for _ in range(kills):
        # each kill lands while the (re)started workers are sending
        before = sum(c.received().values())
        wait_until(lambda: sum(c.received().values()) > before + 50, timeout=60, what="deliveries")
        time.sleep(rng.uniform(0.2, 1.5))
        c.kill_workers()
        sys.stderr.write(f"kill at {time.monotonic() - began:.1f} s, {len(c.received())} delivered\n")
        time.sleep(0.3)
        c.start_workers()
    wait_until(finished(broadcast), timeout=240, what="the broadcast to finish")
    sys.stderr.write(f"finished at {time.monotonic() - began:.1f} s\n")
    # then
    rows = outcome(broadcast)
    received = c.received()
    in_flight_bound = kills * WORKER_PROCESSES
    assert len(rows) == n  # no subscriber without a message
    assert set(rows.values()) <= {"sent", "unknown"}  # every row final
    unknown = [email for email, status in rows.items() if status == "unknown"]
    assert len(unknown) <= in_flight_bound, list(
        Message.objects.filter(broadcast=broadcast, status="unknown").values_list("email", "last_response")
    )
    assert all(received.get(email) == 1 for email, status in rows.items() if status == "sent")  # no loss
    duplicates = sum(times - 1 for times in received.values())
    assert duplicates <= in_flight_bound
    assert Broadcast.objects.get(pk=broadcast.pk).sent_count == n - len(unknown)


# --- SMTP trouble --------------------------------------------------------------------------------------


def test_a_server_answering_421_and_451_for_a_while_delays_but_loses_and_duplicates_nothing(cluster, tmp_path):
    # given: the server refuses everything for ~6 s (421 at MAIL, then 451 after DATA)
    n = 300
    flag = tmp_path / "tempfail"
    flag.write_text("421 4.3.2 Service shutting down")
    c = cluster(sink_args=["--tempfail-flag", str(flag)])
    broadcast = broadcast_to(n, c.port, retry_schedule="1s 2s 3s")
    c.start_workers()
    c.start_beat()
    # when
    broadcasts.send_now(broadcast)
    wait_until(lambda: Message.objects.filter(broadcast=broadcast, attempts__gte=1).exists(), timeout=30,
               what="first attempts")
    time.sleep(3)
    flag.write_text("451 4.3.0 Try again later")
    time.sleep(3)
    flag.unlink()
    wait_until(finished(broadcast), timeout=90, what="the broadcast to finish")
    # then
    received = c.received()
    assert set(outcome(broadcast).values()) == {"sent"}
    assert sorted(received) == sorted(outcome(broadcast)) and set(received.values()) == {1}
    assert Message.objects.filter(broadcast=broadcast, attempts__gt=1).exists()  # the back-off, in the attempts


def test_hard_bounces_get_one_attempt_and_are_suppressed_the_rest_is_delivered(cluster):
    # given: 20 of 200 recipients do not exist (10 %: the bounce brake, campaigns.brakes, would pause the
    # broadcast; it is switched off here, this test is about each bounce's single attempt); DKIM on
    from campaigns import dkim, policy
    from campaigns.models import BouncePolicy

    policy.current()
    BouncePolicy.objects.filter(pk=1).update(brake_bounce_percent=0)

    pem, txt = dkim.generate_key("ed25519")
    c = cluster(sink_args=["--bounce", "^gone", "--store", "1"])
    broadcast = broadcast_to(180, c.port, dkim_domain="alice.example", dkim_selector="s1", dkim_private_key=pem)
    audience(broadcast.lists.get(), 20, prefix="gone")
    c.start_workers()
    c.start_beat()
    # when
    broadcasts.send_now(broadcast)
    wait_until(finished(broadcast), timeout=60, what="the broadcast to finish")
    # then
    gone = Message.objects.filter(broadcast=broadcast, email__startswith="gone")
    assert sorted(set(gone.values_list("status", "attempts"))) == [("failed", 1)]
    assert Suppression.objects.filter(email__startswith="gone", reason="hard_bounce").count() == 20
    assert len(c.received()) == 180 and set(c.received().values()) == {1}
    # and a message from the sink parses, verifies with dkimpy and meets RFC 8058
    import email
    import email.policy

    import dkim as dkimpy

    raw = next(c.state.glob("*.eml")).read_bytes()
    assert dkimpy.verify(raw, dnsfunc=lambda name, timeout=5: txt.encode())
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed.defects == [] and parsed.get_body(("html",)) is not None
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"].startswith("<http://testserver/u/")
    signed = parsed["DKIM-Signature"].replace(" ", "").replace("\r\n", "")
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= set(signed.split("h=")[1].split(";")[0].lower().split(":"))


def test_an_unsubscribe_during_the_send_stops_that_subscribers_pending_message(cluster, client):
    from campaigns import composing

    # given: a slow send (50 messages a second)
    c = cluster()
    broadcast = broadcast_to(300, c.port, rate_per_second=50)
    c.start_workers()
    c.start_beat()
    broadcasts.send_now(broadcast)
    wait_until(lambda: len(c.received()) > 0, timeout=30, what="the first delivery")
    # when: the last subscriber one-click unsubscribes while their message waits
    last = Message.objects.filter(broadcast=broadcast).order_by("-pk").first()
    assert last.status in ("queued", "sending")  # waiting, possibly in a claimed batch
    response = client.post(composing.unsubscribe_url(last.pk).removeprefix("http://testserver"),
                           {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    wait_until(finished(broadcast), timeout=60, what="the broadcast to finish")
    # then
    last.refresh_from_db()
    assert (last.status, last.last_response) == ("skipped", "Skipped: the subscriber unsubscribed.")
    assert last.email not in c.received() and len(c.received()) == 299


# --- Redis and Postgres going away -----------------------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path):
    """A redis-server of our own (never the shared one), restartable empty."""
    port = free_port()
    command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(tmp_path)]

    class OwnRedis:
        url = f"redis://127.0.0.1:{port}"

        def start(self):
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
            wait_until(self.answers, timeout=10, what="redis-server")

        def answers(self):
            import redis

            try:
                return redis.Redis(port=port, socket_timeout=0.5).ping()
            except redis.ConnectionError:
                return False

        def restart_empty(self, pause=2.0):
            stop(self.process, signal.SIGKILL)
            time.sleep(pause)
            self.start()

    server = OwnRedis()
    server.start()
    yield server
    stop(server.process, signal.SIGKILL)


def test_redis_restarted_empty_mid_send_the_send_completes_by_itself(cluster, own_redis):
    # given: cache, rate limits and the Celery broker all on our own Redis; a rate-limited send
    n = 1500
    c = cluster(redis_url=f"{own_redis.url}/0", broker_url=f"{own_redis.url}/1")
    broadcast = broadcast_to(n, c.port, rate_per_second=300)
    c.start_workers()
    c.start_beat()
    # when: the broadcast is started (as "send now" does), and Redis dies and comes back empty
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    wait_until(lambda: len(c.received()) > 100, timeout=40, what="deliveries")
    own_redis.restart_empty()
    wait_until(finished(broadcast), timeout=90, what="the broadcast to finish")
    # then
    rows = outcome(broadcast)
    received = c.received()
    assert len(rows) == n and set(rows.values()) <= {"sent", "unknown"}
    assert all(received.get(email) == 1 for email, status in rows.items() if status == "sent")
    assert sum(times - 1 for times in received.values()) == 0


def test_postgres_connections_terminated_mid_send_the_send_completes_by_itself(cluster):
    # given
    n = 2000
    c = cluster()
    broadcast = broadcast_to(n, c.port, rate_per_second=400)
    c.start_workers()
    c.start_beat()
    broadcasts.send_now(broadcast)
    # when: every other connection to the test database is terminated, three times
    for _ in range(3):
        wait_until(lambda: Broadcast.objects.get(pk=broadcast.pk).sent_count > 0, timeout=30, what="progress")
        time.sleep(1)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchone()[0] >= 1
    wait_until(finished(broadcast), timeout=90, what="the broadcast to finish")
    # then
    rows = outcome(broadcast)
    received = c.received()
    assert len(rows) == n and set(rows.values()) <= {"sent", "unknown"}
    assert all(received.get(email) == 1 for email, status in rows.items() if status == "sent")
    assert sum(times - 1 for times in received.values()) == 0
    assert Subscription.objects.filter(status="confirmed").count() == n
