"""The Celery app. Tasks take ids, never objects; Postgres holds the queues."""

import os
import time

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoresponder.settings")

app = Celery("autoresponder")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

HEARTBEAT_KEY = "autoresponder:heartbeat"


@app.task(name="autoresponder.heartbeat", ignore_result=True)
def heartbeat():
    """Rung by beat every 15 s; the dashboard shows whether worker and scheduler run."""
    from django.core.cache import cache

    cache.set(HEARTBEAT_KEY, time.time(), timeout=24 * 3600)
