"""The send journal (campaigns.journal): outcomes in Redis at once, in Postgres in sets, and
what the reaper makes of a dead worker's journal. Real Postgres, Redis and SMTP."""

import os
import time
from datetime import timedelta

import pytest
import redis
from django.utils import timezone

from campaigns import journal, ledger, ratelimit, sending
from campaigns.models import Broadcast
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for
from tests.smtp import free_port

pytestmark = pytest.mark.django_db

LATER = timedelta(seconds=61)  # past the test leases of 60 s


@pytest.fixture
def started():
    """A broadcast of `count` messages, sending, its ledger written."""

    def start(count=5):
        newsletter = MailingListFactory(name="Newsletter")
        audience(newsletter, count)
        broadcast = BroadcastFactory(lists=[newsletter])
        Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
        broadcast.refresh_from_db()
        ledger.fan_out(broadcast, send_at=timezone.now())
        return broadcast

    return start


@pytest.fixture
def redis_down():
    """Redis unreachable for this process (a client to a closed port) until the test ends."""
    was = ratelimit._redis.get("client")
    ratelimit._redis["client"] = redis.Redis(port=free_port(), socket_timeout=0.5, socket_connect_timeout=0.5)
    journal._held.clear()  # the connection kept for journal writes goes too
    yield
    journal._held.clear()
    journal._down["until"] = 0.0
    if was is None:
        ratelimit._redis.pop("client", None)
    else:
        ratelimit._redis["client"] = was


def sent(row, at=None):
    return journal.Outcome(row["pk"], "sent", at or timezone.now(), None, None, f"<{row['pk']}@test>", "", "250 OK")


def claimed(broadcast, token):
    rows, _ = ledger.claim(broadcast, limit=10, lease_seconds=60, token=token)
    return rows


def open_batch(broadcast):
    """A batch as a worker starts one: its journal opened, its rows claimed under that lease."""
    token = journal.begin()
    return token, claimed(broadcast, token), journal.Journal(token)


def statuses(broadcast):
    return list(broadcast.messages.order_by("pk").values_list("status", flat=True))


def journal_keys():
    return ratelimit.redis_client().keys("ar:journal:*")


def pushes_sent():
    """The corked pushes of this process's channel go to Redis now (as at a check, or after the
    kernel's 200 ms): what another connection reads next includes them."""
    journal._held[os.getpid()].send_queued()


def worker_dies():
    """This process's channel closes, as the kernel closes a killed worker's: queued pushes first."""
    channel = journal._held.pop(os.getpid())
    channel.conn.disconnect()


def test_a_batch_journals_its_outcomes_and_leaves_no_journal_behind(smtp_server, started):
    # given
    backend_for(smtp_server)
    broadcast = started(5)
    # when
    result = sending.send_batch(broadcast.pk)
    # then: every outcome is in Postgres, counted once, and the journal is gone
    assert result.counts["sent"] == 5 and len(smtp_server.messages) == 5
    assert statuses(broadcast) == ["sent"] * 5
    assert set(broadcast.messages.values_list("attempts", "leased_by")) == {(1, "")}
    assert journal_keys() == []
    broadcast.refresh_from_db()
    assert broadcast.sent_count == 5


def test_a_claim_of_nothing_leaves_no_journal_behind(smtp_server, started):
    backend_for(smtp_server)
    broadcast = started(2)
    sending.send_batch(broadcast.pk)
    assert sending.send_batch(broadcast.pk).claimed == 0
    assert journal_keys() == []


def test_outcomes_wait_in_the_journal_until_a_flush(started):
    # given: a journaled lease of five rows
    broadcast = started(5)
    token, rows, log = open_batch(broadcast)
    # when: two outcomes are added
    assert log.add(sent(rows[0])) and log.add(sent(rows[1]))
    # then: they are in Redis (sent on from the kernel's queue), not yet in Postgres; a flush
    # writes both in one go
    assert token.startswith(journal.PREFIX)
    pushes_sent()
    assert len(ratelimit.redis_client().lrange(journal.key(token), 0, -1)) == 3  # the header and two outcomes
    assert statuses(broadcast) == ["sending"] * 5
    assert log.flush() is True
    assert statuses(broadcast) == ["sent", "sent", "sending", "sending", "sending"]
    assert log.counts == {"sent": 2}


def test_a_dead_workers_journaled_outcomes_become_sent_and_only_the_in_flight_one_unknown(started):
    # given: a worker journaled two accepted messages, was sending the third, and died before any flush
    broadcast = started(5)
    token, rows, log = open_batch(broadcast)
    log.add(sent(rows[0]))
    log.add(sent(rows[1]))
    worker_dies()
    # when: its lease expires and the reaper runs
    unknown, requeued = ledger.reap(now=timezone.now() + LATER)
    # then: the accepted two are sent (never sent again), the third is unknown, the last two go again
    assert (unknown, requeued) == (1, 2)
    assert statuses(broadcast) == ["sent", "sent", "unknown", "queued", "queued"]
    first = broadcast.messages.order_by("pk").first()
    assert (first.attempts, first.message_id, first.last_response, first.sent_at is not None) == (
        1, f"<{rows[0]['pk']}@test>", "250 OK", True)
    broadcast.refresh_from_db()
    assert (broadcast.sent_count, broadcast.unknown_count) == (2, 1)


def test_a_journal_flushed_just_before_the_crash_is_applied_once(started):
    # given: the outcomes reached Postgres, the worker died before deleting its journal
    broadcast = started(3)
    token, rows, log = open_batch(broadcast)
    log.add(sent(rows[0]))
    log.flush()
    # when
    unknown, requeued = ledger.reap(now=timezone.now() + LATER)
    # then: the first is recorded once (one attempt), the second was in flight, the third goes again
    assert (unknown, requeued) == (1, 1)
    assert list(broadcast.messages.order_by("pk").values_list("status", "attempts")) == [
        ("sent", 1), ("unknown", 1), ("queued", 0)]
    broadcast.refresh_from_db()
    assert broadcast.sent_count == 0  # a flush is counted by its batch, which died; the final recount has it


def test_a_lost_journal_makes_every_row_of_the_lease_unknown_never_resent(started):
    # given: a worker journaled an outcome, then Redis lost the journal and the worker died
    broadcast = started(3)
    token = journal.begin()
    rows = claimed(broadcast, token)
    journal.Journal(token).add(sent(rows[0]))
    ratelimit.redis_client().delete(journal.key(token))
    # when
    unknown, requeued = ledger.reap(now=timezone.now() + LATER)
    # then: nobody knows which went out; none is sent again
    assert (unknown, requeued) == (3, 0)
    assert statuses(broadcast) == ["unknown"] * 3
    assert broadcast.messages.first().last_response == ledger.LOST_JOURNAL_TEXT


def test_the_reaper_waits_for_an_unreachable_journal_then_gives_up_after_an_hour(started, redis_down):
    # given: a dead journaled lease, and Redis down
    broadcast = started(2)
    token = journal.PREFIX + "vm:1:dead"
    claimed(broadcast, token)
    # when / then: a minute later the reaper leaves the rows for a later pass
    assert ledger.reap(now=timezone.now() + LATER) == (0, 0)
    assert statuses(broadcast) == ["sending"] * 2
    # and an hour past the lease they are unknown, not sent again
    assert ledger.reap(now=timezone.now() + LATER + journal.LOST_AFTER) == (2, 0)
    assert statuses(broadcast) == ["unknown"] * 2


def test_without_redis_a_batch_writes_each_outcome_to_postgres(smtp_server, started, redis_down):
    # given
    backend_for(smtp_server)
    broadcast = started(3)
    # when
    token = journal.begin()
    result = sending.send_batch(broadcast.pk, token=token)
    # then
    assert not token.startswith(journal.PREFIX)
    assert result.counts["sent"] == 3 and statuses(broadcast) == ["sent"] * 3


def test_redis_failing_mid_batch_sends_the_pending_outcomes_to_postgres_at_once(started, redis_down, settings):
    # given: a journaled lease with one outcome waiting (Redis was up when it was added)
    broadcast = started(3)
    live = redis.Redis.from_url(settings.REDIS_URL)
    token = journal.PREFIX + "vm:2:live"
    live.rpush(journal.key(token), journal.HEADER)
    rows = claimed(broadcast, token)
    log = journal.Journal(token)
    log.pending.append(sent(rows[0]))  # as add() leaves it
    # when: the next add finds Redis gone
    assert log.add(sent(rows[1])) is True
    # then: both are in Postgres, and the batch goes on without the journal
    assert statuses(broadcast) == ["sent", "sent", "sending"]
    assert log.is_journaled is False
    assert log.add(sent(rows[2])) is True
    assert statuses(broadcast) == ["sent"] * 3
    live.delete(journal.key(token))


def test_a_journal_lost_by_redis_mid_batch_is_written_to_postgres_and_started_again(started):
    # given: one outcome journaled, then Redis restarted empty
    broadcast = started(3)
    token, rows, log = open_batch(broadcast)
    log.add(sent(rows[0]))
    ratelimit.redis_client().delete(journal.key(token))
    assert log.add(sent(rows[1])) is True  # written with the replies off: nothing is known yet
    # when: the batch flushes (every FLUSH_EVERY messages, once a second, at its end)
    assert log.flush() is True
    # then: it found the journal short, so both outcomes are in Postgres and the journal starts
    # again with its header
    assert statuses(broadcast) == ["sent", "sent", "sending"]
    assert ratelimit.redis_client().lrange(journal.key(token), 0, -1) == [journal.HEADER]
    assert log.add(sent(rows[2])) is True and log.close() is True
    assert statuses(broadcast) == ["sent"] * 3


def test_journal_entries_are_written_without_waiting_for_a_reply(started):
    # given: a batch's journal on this process's channel
    broadcast = started(3)
    token, rows, log = open_batch(broadcast)
    channel = journal._held[os.getpid()]
    assert channel.quiet  # this Redis takes CLIENT REPLY OFF
    # when
    for row in rows:
        assert log.add(sent(row)) is True
    # then: the entries wait corked in the kernel (until a check, or its 200 ms), not woken into
    # Redis one by one; once sent they are in Redis, in order, and no reply waits unread on the connection
    assert channel.corked
    # (one left there would make a killed worker's connection end with a reset)
    pushes_sent()
    entries = ratelimit.redis_client().lrange(journal.key(token), 0, -1)
    assert entries[0] == journal.HEADER
    assert [journal.decode(e).pk for e in entries[1:]] == [row["pk"] for row in rows]
    assert not channel.conn.can_read(timeout=0.2)
    # and the check at the flush reads its own replies only
    assert log.flush() is True and log.is_journaled
    assert not channel.conn.can_read(timeout=0.2)
    assert statuses(broadcast) == ["sent"] * 3


def test_a_redis_that_refuses_client_reply_gets_a_round_trip_per_entry(started, monkeypatch):
    # given: a server (a proxy, say) that refuses the command switching replies off
    broadcast = started(2)
    journal._held.clear()
    monkeypatch.setattr(journal._Channel, "OFF", ("CLIENT", "REPLY", "REFUSED-HERE"))
    token, rows, log = open_batch(broadcast)
    channel = journal._held[os.getpid()]
    # when
    assert log.add(sent(rows[0])) is True
    # then: the channel kept its replies, and the push was answered and checked at once
    assert not channel.quiet
    assert log.unchecked is False and log.length == 2
    assert not channel.conn.can_read(timeout=0.2)
    assert log.close() is True
    assert statuses(broadcast)[0] == "sent"
    journal._held.clear()

def test_a_lost_lease_stops_the_batch_at_its_next_flush(started):
    # given: a worker stalled past its lease with an outcome in its journal, and the reaper ran
    broadcast = started(3)
    token, rows, log = open_batch(broadcast)
    log.add(sent(rows[0]))
    time.sleep(0.3)  # the kernel sends a corked queue after 200 ms; a stall past a lease is minutes
    ledger.reap(now=timezone.now() + LATER)
    # when: the worker wakes up and flushes
    recorded = log.add(sent(rows[1])) and log.flush()
    # then: it learns the rows are not its own any more; the reaper's outcome stands
    assert recorded is False
    assert statuses(broadcast) == ["sent", "unknown", "queued"]


def test_a_batch_whose_lease_was_taken_sends_nothing_more(smtp_server, started, settings):
    # given: a batch stalled past its lease (the reaper took its rows) before its next message
    backend_for(smtp_server)
    broadcast = started(4)
    token = journal.begin()
    rows = claimed(broadcast, token)
    batch = sending.Batch(broadcast, sending.pick_backend(broadcast), rows, token)
    batch.lease_renewed -= LATER.total_seconds()  # the stall, on the worker's clock
    ledger.reap(now=timezone.now() + LATER)
    # when
    batch.run(sending.Job.for_broadcast(broadcast))
    # then
    assert smtp_server.messages == []
    assert statuses(broadcast) == ["unknown", "queued", "queued", "queued"]


def test_a_second_reaper_at_the_same_time_leaves_the_dead_lease_to_the_first(started):
    import psycopg2
    from django.db import connection

    # given: a dead lease of two rows, and another reaper at work (it holds the reapers' lock)
    broadcast = started(2)
    claimed(broadcast, "dead-worker")
    db = connection.settings_dict
    other = psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [ledger._REAP_LOCK])
        # when / then: this one leaves the rows alone
        assert ledger.reap(now=timezone.now() + LATER) == (0, 0)
        assert statuses(broadcast) == ["sending", "sending"]
    finally:
        other.rollback()
        other.close()
    # and reaps them once the other is done
    assert ledger.reap(now=timezone.now() + LATER) == (1, 1)


def test_a_fresh_batch_does_not_renew_the_lease_its_claim_just_set(smtp_server, started):
    # given: a batch just claimed
    backend_for(smtp_server)
    broadcast = started(3)
    token = journal.begin()
    rows = claimed(broadcast, token)
    leased_until = set(broadcast.messages.values_list("lease_until", flat=True))
    batch = sending.Batch(broadcast, sending.pick_backend(broadcast), rows, token)
    # when: it sends its first message
    assert batch._may_continue()
    # then: the rows keep the claim's lease (renewing it is an UPDATE of every row of the batch)
    assert set(broadcast.messages.values_list("lease_until", flat=True)) == leased_until
    # but a batch that took a fifth of a lease to get going renews it
    batch.lease_renewed -= sending.knob("SEND_LEASE_SECONDS") / 5 + 1
    assert batch._may_continue()
    assert set(broadcast.messages.values_list("lease_until", flat=True)) != leased_until


def test_a_redis_url_asking_for_health_checks_does_not_stall_the_quiet_channel(started, settings):
    # given: a client that would PING before any command (health_check_interval in REDIS_URL)
    was = ratelimit._redis.get("client")
    ratelimit._redis["client"] = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=0.001)
    journal._held.clear()
    try:
        broadcast = started(2)
        token, rows, log = open_batch(broadcast)
        # when: the entries go out after an idle moment
        time.sleep(0.01)
        began = time.monotonic()
        for row in rows:
            assert log.add(sent(row)) is True
        assert log.close() is True
        # then: no command waited for a PONG that replies-off would never send
        assert time.monotonic() - began < 1
        assert statuses(broadcast) == ["sent", "sent"]
    finally:
        journal._held.clear()
        if was is None:
            ratelimit._redis.pop("client", None)
        else:
            ratelimit._redis["client"] = was


_KILLED_WORKER = """
import os, signal, sys
import django
django.setup()
from campaigns import journal
name = sys.argv[1]
journal._open(name)
channel = journal._held[os.getpid()]
assert channel.quiet and channel.corked
for n in range(5):
    channel.push(name, str(n))
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_worker_killed_with_corked_pushes_loses_none_of_them(settings):
    # given: a worker process whose channel holds five pushes corked in the kernel
    import subprocess
    import sys

    name = journal.key(journal.PREFIX + f"vm:{os.getpid()}:killed")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "autoresponder.settings", "REDIS_URL": settings.REDIS_URL}
    # when: it is killed with SIGKILL right after the last push
    done = subprocess.run([sys.executable, "-c", _KILLED_WORKER, name], env=env, cwd=settings.BASE_DIR,
                          capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr.decode()
    # then: the kernel sent the queue before closing the connection, and Redis applied all of it
    live = ratelimit.redis_client()
    deadline = time.monotonic() + 5
    while live.llen(name) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert live.lrange(name, 0, -1) == [journal.HEADER, b"0", b"1", b"2", b"3", b"4"]
    live.delete(name)
