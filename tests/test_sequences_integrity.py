"""The ledger's links to steps and subscribers under concurrency (Postgres).

Message.step and Message.subscriber have no foreign-key constraints; triggers keep them
(campaigns migration 0013): an INSERT checks and locks (FOR KEY SHARE) the rows it points at,
a deleted step or subscriber has its messages' link set to NULL. These tests hold a real
transaction open in one thread (a scheduler batch, a broadcast fan-out) while another
connection deletes, and check that no message is left pointing at a row that is gone.
"""

import threading
import time
from datetime import timedelta

import psycopg2
import pytest
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from campaigns import ledger, scheduler, sequences
from campaigns.models import Enrollment, Message, Step
from lists.models import Subscriber
from tests.sending_factories import BroadcastFactory
from tests.sequence_helpers import T0, build, people, run

pytestmark = pytest.mark.django_db(transaction=True)
DAY = timedelta(days=1)
NOT_SENT = "Cancelled: the step or sequence was deleted."


def orphans():
    """Messages pointing at a step or subscriber that does not exist."""
    return list(
        Message.objects.exclude(step__isnull=True).exclude(step_id__in=Step.objects.values("pk")).values_list("pk")
    ) + list(
        Message.objects.exclude(subscriber__isnull=True).exclude(subscriber_id__in=Subscriber.objects.values("pk"))
        .values_list("pk")
    )


class Held:
    """`work` run in a thread on its own connection, in a transaction held open after it ran
    until `release()`: its rows are written, locked and not yet committed."""

    def __init__(self, work):
        self.written, self.go, self.error = threading.Event(), threading.Event(), None
        self.thread = threading.Thread(target=self._run, args=(work,))
        self.thread.start()
        assert self.written.wait(30), "the held transaction did not get to its writes"

    def _run(self, work):
        try:
            with transaction.atomic():
                work()
                self.written.set()
                assert self.go.wait(30)
        except Exception as exc:  # noqa: BLE001 (the test thread reads it)
            self.error = exc
            self.written.set()
        finally:
            connections.close_all()

    def release(self):
        self.go.set()
        self.thread.join(30)
        if self.error:
            raise self.error


class Beside:
    """`work` run in a thread on its own connection (autocommit, like a request)."""

    def __init__(self, work):
        self.error = None
        self.thread = threading.Thread(target=self._run, args=(work,))
        self.thread.start()

    def _run(self, work):
        try:
            work()
        except Exception as exc:  # noqa: BLE001
            self.error = exc
        finally:
            connections.close_all()

    def join(self):
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error


def raw_connection():
    """A psycopg2 connection of its own to the test database (psql-like SQL, outside Django)."""
    db = connection.settings_dict
    return psycopg2.connect(dbname=db["NAME"], user=db["USER"], host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432)


def wait_until_blocked(waiters=1, timeout=10):
    """Until `waiters` backends of the test database wait for a lock."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                           " AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0] >= waiters:
                return
            time.sleep(0.02)
    raise AssertionError("nobody waits for a lock")


def due_for_second_step(count=3):
    """A two-step sequence whose first step went out at T0: the second is due at T0 + 1 day."""
    sequence = build(steps=((0, "days"), (1, "days")))
    readers = people(sequence.mailing_list, count)
    run(T0, sequence)
    Message.objects.update(status=Message.SENT)
    second = sequence.steps.get(position=2)
    return sequence, readers, second


def batch_of(sequence, at):
    """A scheduler batch (claim, decide, write) over the sequence's due rows."""
    plan = scheduler.Plan(sequence, at)
    return lambda: scheduler.run_batch(plan, 100)


# --- Steps ---------------------------------------------------------------------------------------------


def test_a_step_deleted_during_a_batch_waits_for_it_and_cancels_what_it_queued():
    # given a batch that has queued the second step for three readers, not yet committed
    sequence, readers, second = due_for_second_step()
    batch = Held(batch_of(sequence, T0 + DAY))
    # when the step is deleted meanwhile
    deleting = Beside(lambda: sequences.delete_step(Step.objects.get(pk=second.pk)))
    wait_until_blocked()
    batch.release()
    deleting.join()
    # then the delete waited for the batch and cancelled its messages; none points at the step
    assert not Step.objects.filter(pk=second.pk).exists()
    assert sorted(Message.objects.filter(step__isnull=True).values_list("email", "status", "last_response")) == [
        (reader.email, Message.CANCELLED, NOT_SENT) for reader in sorted(readers, key=lambda r: r.email)
    ]
    assert orphans() == []


def test_a_step_deleted_by_sql_during_a_batch_leaves_no_message_pointing_at_it():
    # given
    sequence, readers, second = due_for_second_step()
    batch = Held(batch_of(sequence, T0 + DAY))
    # when a psql session deletes the step (no service, no ORM)
    raw = raw_connection()
    deleting = Beside(lambda: _execute(raw, "DELETE FROM campaigns_step WHERE id = %s", [second.pk]))
    wait_until_blocked()
    batch.release()
    deleting.join()
    raw.close()
    # then
    assert Message.objects.filter(step__isnull=True, status=Message.CANCELLED).count() == 3
    assert orphans() == []


def test_a_batch_after_a_step_was_deleted_plans_again_instead_of_failing():
    # given a plan made while the second step still existed (a pass under way)
    sequence, readers, second = due_for_second_step()
    plan = scheduler.Plan(sequence, T0 + DAY)
    # when the step is deleted by SQL (so nobody is planned again) before the batch starts
    raw = raw_connection()
    _execute(raw, "DELETE FROM campaigns_step WHERE id = %s", [second.pk])
    raw.close()
    result = scheduler.run_batch(plan, 100)
    # then the batch saw the step gone: nothing queued, everyone finished
    assert (result.claimed, result.queued, result.finished) == (3, 0, 3)
    assert Message.objects.filter(status=Message.QUEUED).count() == 0
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.FINISHED}
    assert orphans() == []


def test_a_batch_waits_for_a_step_being_deleted_and_then_plans_again():
    # given a psql session that deleted the second step and has not committed yet
    sequence, readers, second = due_for_second_step()
    raw = raw_connection()
    _execute(raw, "DELETE FROM campaigns_step WHERE id = %s", [second.pk], commit=False)
    # when a batch starts, and the delete commits
    batch = Beside(batch_of(sequence, T0 + DAY))
    wait_until_blocked()
    raw.commit()
    raw.close()
    batch.join()
    # then the batch queued nothing for the deleted step
    assert Message.objects.filter(status=Message.QUEUED).count() == 0
    assert set(Enrollment.objects.values_list("status", flat=True)) == {Enrollment.FINISHED}
    assert orphans() == []


def test_a_message_for_a_step_that_does_not_exist_is_refused():
    # given
    sequence, readers, second = due_for_second_step(count=1)
    # when / then
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(step_id=second.pk + 1000, subscriber=readers[0], email=readers[0].email,
                               next_attempt_at=T0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.filter(step=second.pk - 1).update(step_id=second.pk + 1000)


# --- Subscribers ---------------------------------------------------------------------------------------


def test_a_subscriber_deleted_during_a_batch_keeps_the_message_without_the_link():
    # given a batch that has queued the second step for three readers, not yet committed
    sequence, readers, second = due_for_second_step()
    batch = Held(batch_of(sequence, T0 + DAY))
    # when the first reader is deleted meanwhile (the ORM: their enrollment first, locked by the batch)
    deleting = Beside(lambda: Subscriber.objects.filter(pk=readers[0].pk).delete())
    wait_until_blocked()
    batch.release()
    deleting.join()
    # then the reader's message stays, without its subscriber (statistics survive, nobody mails it)
    assert list(Message.objects.filter(step=second, email=readers[0].email).values_list("subscriber_id")) == [(None,)]
    assert Message.objects.filter(step=second, subscriber__isnull=False).count() == 2
    assert orphans() == []


def test_a_subscriber_deleted_by_sql_during_a_batch_keeps_the_message_without_the_link():
    # given
    sequence, readers, second = due_for_second_step()
    batch = Held(batch_of(sequence, T0 + DAY))
    # when a psql session deletes the subscriber row first (it waits for the batch's lock), then the rest
    raw = raw_connection()
    reader = readers[0].pk
    deleting = Beside(lambda: _execute(raw, "DELETE FROM lists_subscriber WHERE id = %s;"
                                            " DELETE FROM campaigns_enrollment WHERE subscriber_id = %s;"
                                            " DELETE FROM lists_subscription WHERE subscriber_id = %s",
                                       [reader, reader, reader]))
    wait_until_blocked()
    batch.release()
    deleting.join()
    raw.close()
    # then
    assert not Subscriber.objects.filter(pk=reader).exists()
    assert list(Message.objects.filter(step=second, email=readers[0].email).values_list("subscriber_id")) == [(None,)]
    assert orphans() == []


def test_a_subscriber_deleted_during_a_fan_out_keeps_the_message_without_the_link():
    # given a broadcast's fan-out written and not committed
    sequence, readers, second = due_for_second_step()
    broadcast = BroadcastFactory(lists=[sequence.mailing_list])
    fan_out = Held(lambda: ledger.fan_out(broadcast, send_at=timezone.now()))
    # when a reader is deleted meanwhile
    deleting = Beside(lambda: Subscriber.objects.filter(pk=readers[1].pk).delete())
    wait_until_blocked()
    fan_out.release()
    deleting.join()
    # then
    assert list(broadcast.messages.filter(email=readers[1].email).values_list("subscriber_id")) == [(None,)]
    assert broadcast.messages.filter(subscriber__isnull=False).count() == 2
    assert orphans() == []


def test_a_fan_out_that_meets_a_subscriber_being_deleted_fails_whole():
    # given a psql session that deleted a reader and has not committed yet
    sequence, readers, second = due_for_second_step()
    broadcast = BroadcastFactory(lists=[sequence.mailing_list])
    raw = raw_connection()
    reader = readers[1].pk
    _execute(raw, "DELETE FROM lists_subscriber WHERE id = %s;"
                  " DELETE FROM campaigns_enrollment WHERE subscriber_id = %s;"
                  " DELETE FROM lists_subscription WHERE subscriber_id = %s", [reader, reader, reader], commit=False)
    # when the fan-out runs and the delete commits
    fanning = Beside(lambda: ledger.fan_out(broadcast, send_at=timezone.now()))
    wait_until_blocked()
    raw.commit()
    raw.close()
    # then the fan-out fails as a foreign key would make it (it is run again), and writes nothing
    with pytest.raises(IntegrityError):
        fanning.join()
    assert broadcast.messages.count() == 0
    assert ledger.fan_out(broadcast, send_at=timezone.now()) == 2
    assert orphans() == []


def _execute(raw, sql, params, *, commit=True):
    with raw.cursor() as cursor:
        cursor.execute(sql, params)
    if commit:
        raw.commit()
