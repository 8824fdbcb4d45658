"""Background work for lists. Thin: each task takes ids and calls a service."""

import smtplib

from celery import shared_task

from . import services


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
