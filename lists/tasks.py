"""Background work for lists. Thin: each task takes ids and calls a service."""

import smtplib

from celery import shared_task

from . import bulk_jobs, importing, services
from .models import ImportJob


# Network trouble is worth retrying; a template or data error is not (it would fail again).
@shared_task(
    name="lists.send_confirmation",
    ignore_result=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=30,
    retry_backoff_max=1800,
    max_retries=6,
)
def send_confirmation(subscription_id):
    """Send the double opt-in mail for one subscription; safe to run twice (see deliver_confirmation)."""
    services.deliver_confirmation(subscription_id)


# --- CSV imports (lists.importing) ------------------------------------------------------------


@shared_task(name="lists.run_import", ignore_result=True)
def run_import(job_id):
    """Run a waiting import; a job already claimed (a task delivered twice) is left alone."""
    job = ImportJob.objects.filter(pk=job_id).first()
    if job is not None:
        importing.run_import(job)


@shared_task(name="lists.send_import_confirmations", ignore_result=True)
def send_import_confirmations(job_id, after_id=0):
    """Ask an import's unconfirmed subscriptions for confirmation, one batch per task run."""
    job = ImportJob.objects.filter(pk=job_id).first()
    last = importing.request_import_confirmations(job, after_id=after_id) if job else None
    if last is not None:
        send_import_confirmations.delay(job_id, last)


# --- Bulk actions on many subscribers (lists.bulk_jobs) ---------------------------------------


@shared_task(name="lists.run_bulk_action", ignore_result=True)
def run_bulk_action(job_id):
    """Tag, untag, unsubscribe or delete a large set of subscribers in chunks; safe to deliver twice."""
    bulk_jobs.run(job_id)
