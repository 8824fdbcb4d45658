"""
Bulk actions too big for one request (more than INLINE_MAX subscribers) run as
a Celery task (lists.tasks.run_bulk_action) that works through the set in
chunks (lists.bulk_actions.apply_in_chunks) while the dashboard shows a
progress bar.

The job (lists.jobs: in the shared cache for a day) keeps what to do, to which
subscribers (the ids, or the index's filters, evaluated when the job runs), and
how far it got. Every action is idempotent, so doing a lost job again finishes it.
"""

from . import bulk_actions
from .jobs import DONE, Jobs  # DONE: the progress view reads it here
from .models import MailingList

INLINE_MAX = 20_000  # up to this many run in the request (deleting 10,000 takes ~3 s)
JOBS = Jobs("lists:bulk-job")


def start(spec, *, total, user):
    """Store a job and queue its task once the surrounding transaction commits; returns its id.

    `spec`: {"action", "tag_name", "from_list" (id or None), "reason", and "ids" or "filters"}.
    """
    from .tasks import run_bulk_action  # tasks call back into this module

    return JOBS.start(run_bulk_action, {**spec, "total": total}, user=user)


def get(job_id):
    return JOBS.get(job_id)


def run(job_id):
    """Do a waiting job, chunk by chunk, recording progress; a job already claimed is left alone."""
    JOBS.run(job_id, _apply)


def _apply(job, save):
    return bulk_actions.apply_in_chunks(
        job["action"], bulk_actions.subscribers_for(job),
        on_chunk=lambda seen, changed: save(seen=seen, changed=changed),
        tag_name=job.get("tag_name") or "", reason=job.get("reason") or "",
        mailing_list=MailingList.objects.filter(pk=job.get("from_list") or 0).first(),
    )
