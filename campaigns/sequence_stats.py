"""
Figures of a sequence: where its subscribers are, what each step's mail became,
and the funnel through the steps.

From the ledger and the enrollments: messages sent, failed, skipped, still
pending; hard bounces (failed messages whose address is now suppressed); who
left after which step and why. From the tracking rollups (campaigns.stats,
kept per step and hour): deliveries, unique opens and clicks, bounces,
complaints and unsubscribes.

The ledger counts are GROUP BY queries on indexed columns (`message_step_status`,
`enrollment_status`), and everything is cached for CACHE_SECONDS, so a busy
dashboard does not count millions of rows on every page view.
"""

from dataclasses import dataclass, field

from django.core.cache import cache
from django.db.models import Count, Exists, OuterRef
from django.db.models.functions import Lower

from lists.models import Suppression

from . import stats
from .models import Enrollment, Message

CACHE_SECONDS = 30
PENDING = (Message.QUEUED, Message.RETRY, Message.SENDING)


@dataclass
class StepFigures:
    step: object
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    skipped: int = 0
    pending: int = 0
    unknown: int = 0
    cancelled: int = 0
    left_after: dict = field(default_factory=dict)  # exit reason label -> count
    waiting: int = 0  # active enrollments whose next step this is
    tracking: dict = field(default_factory=dict)  # campaigns.stats.step_stats()

    @property
    def unsubscribed_after(self):
        return self.left_after.get(Enrollment.UNSUBSCRIBED, 0)

    def percent_of(self, total):
        return round(100 * self.sent / total) if total else 0


@dataclass
class SequenceFigures:
    entered: int = 0
    active: int = 0
    finished: int = 0
    exited: dict = field(default_factory=dict)  # exit reason -> count
    steps: list = field(default_factory=list)

    @property
    def exited_total(self):
        return sum(self.exited.values())

    @property
    def exits(self):
        labels = dict(Enrollment.EXIT_CHOICES)
        return [(labels.get(reason, reason), n) for reason, n in sorted(self.exited.items())]

    def funnel(self):
        """(label, count, percent of those who entered) from entering to finishing."""
        rows = [("Entered", self.entered)]
        rows += [(f"{f.step.position}. {f.step.subject}", f.sent) for f in self.steps]
        rows.append(("Finished", self.finished))
        return [(label, n, round(100 * n / self.entered) if self.entered else 0) for label, n in rows]


def figures(sequence, *, fresh=False):
    """The sequence's figures, cached for CACHE_SECONDS (fresh=True recounts)."""
    key = f"campaigns:sequence-figures:{sequence.pk}:{sequence.updated_at.timestamp()}"
    found = None if fresh else cache.get(key)
    if found is None:
        found = _count(sequence)
        cache.set(key, found, CACHE_SECONDS)
    return found


def _count(sequence):
    steps = list(sequence.steps.order_by("position", "pk"))
    result = SequenceFigures()
    _count_enrollments(sequence, result)
    per_step = {s.pk: StepFigures(step=s) for s in steps}
    _count_messages(sequence, per_step)
    _count_positions(sequence, per_step)
    for figures_ in per_step.values():
        figures_.tracking = stats.step_stats(figures_.step.pk)
    result.steps = [per_step[s.pk] for s in steps]
    return result


def _count_enrollments(sequence, result):
    # Two counts, each on its partial index: enrollment_due (active), enrollment_ended (the others).
    enrollments = Enrollment.objects.filter(sequence=sequence)
    active = enrollments.filter(status=Enrollment.ACTIVE).count()
    rows = [(Enrollment.ACTIVE, "", active)] if active else []
    rows += (enrollments.exclude(status=Enrollment.ACTIVE).values_list("status", "exit_reason")
             .annotate(n=Count("pk")).order_by())
    for status, reason, n in rows:
        result.entered += n
        if status == Enrollment.ACTIVE:
            result.active += n
        elif status == Enrollment.FINISHED:
            result.finished += n
        else:
            result.exited[reason] = result.exited.get(reason, 0) + n


def _count_messages(sequence, per_step):
    rows = (Message.objects.filter(step__sequence=sequence).values_list("step_id", "status")
            .annotate(n=Count("pk")).order_by())
    for step_id, status, n in rows:
        figures_ = per_step.get(step_id)
        if figures_ is None:
            continue
        if status in PENDING:
            figures_.pending += n
        else:
            setattr(figures_, status, getattr(figures_, status) + n)
    bounced = Suppression.objects.filter(email=Lower(OuterRef("email")), reason=Suppression.HARD_BOUNCE)
    failed = Message.objects.filter(step__sequence=sequence, status=Message.FAILED).filter(Exists(bounced))
    for step_id, n in failed.values_list("step_id").annotate(n=Count("pk")).order_by():
        if step_id in per_step:
            per_step[step_id].bounced = n


def _count_positions(sequence, per_step):
    enrollments = Enrollment.objects.filter(sequence=sequence)
    left = (enrollments.filter(status=Enrollment.EXITED, last_step__isnull=False)
            .values_list("last_step_id", "exit_reason").annotate(n=Count("pk")).order_by())
    for step_id, reason, n in left:
        if step_id in per_step:
            per_step[step_id].left_after[reason] = n
    waiting = (enrollments.filter(status=Enrollment.ACTIVE, next_step__isnull=False)
               .values_list("next_step_id").annotate(n=Count("pk")).order_by())
    for step_id, n in waiting:
        if step_id in per_step:
            per_step[step_id].waiting = n
