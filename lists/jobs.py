"""
Background jobs with a progress bar: the bulk actions on many subscribers
(lists.bulk_jobs) and the sunset button (campaigns.sunset).

A job lives in the shared cache (Redis in production) for a day: what to do,
how far it got (total, seen, changed), its status, who started it and when,
and the error that stopped it. It needs no table because the work is
idempotent: if the cache or a worker loses a job half-way, doing it again
finishes it, and the progress page says how to. A task delivered twice finds
the job claimed (or done) and leaves it alone.
"""

import secrets
import time

from django.core.cache import cache
from django.db import transaction

JOB_SECONDS = 86_400
WAITING, RUNNING, DONE, FAILED = "waiting", "running", "done", "failed"


class Jobs:
    """The jobs of one kind, kept under the cache keys '<prefix>:<job id>'."""

    def __init__(self, prefix):
        self.prefix = prefix

    def key(self, job_id):
        return f"{self.prefix}:{job_id}"

    def start(self, task, fields, *, user):
        """Store a waiting job (`fields` must include "total", None until known) and queue
        task.delay(job_id) once the surrounding transaction commits; returns the job's id."""
        job_id = secrets.token_urlsafe(12)
        cache.set(self.key(job_id), {**fields, "seen": 0, "changed": 0, "status": WAITING,
                                     "by": user.get_username(), "started": time.time(), "error": ""}, JOB_SECONDS)
        transaction.on_commit(lambda: task.delay(job_id))
        return job_id

    def get(self, job_id):
        """The job with its `id` and `percent` (at most 99 until it is done), or None."""
        job = cache.get(self.key(job_id))
        if job is not None:
            total = job["total"]
            job["percent"] = 100 if job["status"] == DONE else min(99, int(100 * job["seen"] / total) if total else 0)
            job["id"] = job_id
        return job

    def run(self, job_id, work):
        """Claim a waiting job and do it: work(job, save) returns how many it changed and calls
        save(seen=…, changed=…) (or total=…) as it goes. A job already claimed is left alone."""
        key = self.key(job_id)
        job = cache.get(key)
        if job is None or job["status"] != WAITING or not cache.add(f"{key}:claim", 1, JOB_SECONDS):
            return

        def save(**changes):
            job.update(changes)
            cache.set(key, job, JOB_SECONDS)

        save(status=RUNNING)
        try:
            changed = work(job, save)
        except Exception as exc:  # shown on the progress page; the chunks done so far stay done
            save(status=FAILED, error=str(exc)[:500])
            raise
        save(status=DONE, seen=job["total"] or 0, changed=changed)
