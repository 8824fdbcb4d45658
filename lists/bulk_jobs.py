"""
Bulk actions too big for one request (more than INLINE_MAX subscribers) run as
a Celery task (lists.tasks.run_bulk_action) that works through the set in
chunks (lists.bulk_actions.apply_in_chunks) while the dashboard shows a
progress bar.

The job lives in the shared cache (Redis in production) for a day: what to do,
to which subscribers (the ids, or the index's filters, evaluated when the job
runs), and how far it got. It needs no table because every action is
idempotent: if the cache or a worker loses a job half-way, doing it again
finishes it, and the progress page says how to. A task delivered twice finds
the job claimed (or done) and leaves it alone.
"""

import secrets
import time

from django.core.cache import cache
from django.db import transaction

from . import bulk_actions
from .models import MailingList

INLINE_MAX = 20_000  # up to this many run in the request (deleting 10,000 takes ~3 s)
JOB_SECONDS = 86_400
WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"


def _key(job_id):
    return f"lists:bulk-job:{job_id}"


def start(spec, *, total, user):
    """Store a job and queue its task once the surrounding transaction commits; returns its id.

    `spec`: {"action", "tag_name", "from_list" (id or None), "reason", and "ids" or "filters"}.
    """
    from .tasks import run_bulk_action  # tasks call back into this module

    job_id = secrets.token_urlsafe(12)
    cache.set(_key(job_id), {**spec, "total": total, "seen": 0, "changed": 0, "status": WAITING,
                             "by": user.get_username(), "started": time.time(), "error": ""}, JOB_SECONDS)
    transaction.on_commit(lambda: run_bulk_action.delay(job_id))
    return job_id


def get(job_id):
    job = cache.get(_key(job_id))
    if job is not None:
        job["percent"] = 100 if job["status"] == DONE else min(99, int(100 * job["seen"] / job["total"]) if job["total"] else 0)
        job["id"] = job_id
    return job


def _save(job_id, job, **changes):
    job.update(changes)
    cache.set(_key(job_id), job, JOB_SECONDS)


def run(job_id):
    """Do a waiting job, chunk by chunk, recording progress; a job already claimed is left alone."""
    job = cache.get(_key(job_id))
    if job is None or job["status"] != WAITING or not cache.add(f"{_key(job_id)}:claim", 1, JOB_SECONDS):
        return
    _save(job_id, job, status=RUNNING)
    try:
        changed = bulk_actions.apply_in_chunks(
            job["action"], bulk_actions.subscribers_for(job),
            on_chunk=lambda seen, changed: _save(job_id, job, seen=seen, changed=changed),
            tag_name=job.get("tag_name") or "", reason=job.get("reason") or "",
            mailing_list=MailingList.objects.filter(pk=job.get("from_list") or 0).first(),
        )
    except Exception as exc:  # shown on the progress page; the chunks done so far stay done
        _save(job_id, job, status=FAILED, error=str(exc)[:500])
        raise
    _save(job_id, job, status=DONE, seen=job["total"], changed=changed)
