"""Helpers for the sequence tests: a list with confirmed people, a sequence with steps, a clock."""

from datetime import UTC, datetime, timedelta

from campaigns import scheduler, sequences, step_sending
from campaigns.models import Message, Sequence
from lists.models import Subscriber, Subscription
from tests.factories import MailingListFactory
from tests.sending_factories import BODY, SenderFactory

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)  # a Monday, before New York's spring-forward


def people(mailing_list, count, *, prefix="reader", confirmed_at=None, time_zone=""):
    """`count` confirmed subscribers on `mailing_list` (two set-based INSERTs)."""
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(email=f"{prefix}{i}@example.org", name=f"Reader{i} Smith", time_zone=time_zone)
        for i in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(subscriber=s, mailing_list=mailing_list, status=Subscription.CONFIRMED,
                     source=Subscription.IMPORT, confirmed_at=confirmed_at or T0)
        for s in subscribers
    )
    return subscribers


def step_body(number):
    return BODY.replace("<p>Read", f"<p>Step {number}. Read")


def build(*, steps=((0, "days"),), mailing_list=None, activate=True, enroll_existing=True, **options):
    """A sequence on `mailing_list` with one step per (delay amount, unit), switched on."""
    mailing_list = mailing_list or MailingListFactory(name="Newsletter")
    sequence = sequences.create_sequence(
        name="Welcome", mailing_list=mailing_list, sender=SenderFactory(), enroll_existing=enroll_existing, **options
    )
    for number, (amount, unit) in enumerate(steps, start=1):
        sequences.add_step(sequence, subject=f"Step {number} for {{{{ subscriber.first_name }}}}",
                           body=step_body(number), delay_amount=amount, delay_unit=unit)
    if activate:
        sequences.enable(sequence)
        Sequence.objects.filter(pk=sequence.pk).update(activated_at=T0 - timedelta(days=1))
        sequence.refresh_from_db()
    return sequence


def run(at, sequence=None):
    """One scheduler pass at `at` (all sequences, or just one), discovery forced."""
    if sequence is None:
        return scheduler.run(now=at, discover_every=0)
    return scheduler.run_one(sequence.pk, now=at)


def send_all(sequence):
    """Send every claimable message of the sequence's steps now, through the real pipeline."""
    sent = 0
    for step in sequence.steps.all():
        while True:
            result = step_sending.send_batch(step.pk)
            sent += result.claimed
            if not result.claimed or result.stop:
                break
    return sent


def ledger_rows(sequence):
    return list(
        Message.objects.filter(step__sequence=sequence).order_by("subscriber__email", "step__position", "entry")
        .values_list("subscriber__email", "step__position", "entry", "status")
    )



class Clock:
    """The scheduler's clock for whole processes and services: SCHEDULER_CLOCK_FILE."""

    def __init__(self, path):
        self.path = path

    def set(self, at):
        self.path.write_text(at.isoformat())
        return at
