"""Start-up checks: configuration mistakes reported by `manage.py check` and at boot."""

from django.conf import settings
from django.core.checks import Error, Warning, register


@register()
def check_production_settings(app_configs, **kwargs):
    problems = []
    if not settings.DEBUG and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        problems.append(
            Warning(
                "Production mode is running on the embedded SQLite database.",
                hint="Set DATABASE_URL to a Postgres database for real sending volumes.",
                id="autoresponder.W001",
            )
        )
    if not settings.DEBUG and settings.CELERY_BROKER_URL.startswith("filesystem://"):
        problems.append(
            Warning(
                "Production mode is using the filesystem Celery broker.",
                hint="Set CELERY_BROKER_URL to redis://… so workers on several machines share the queue.",
                id="autoresponder.W002",
            )
        )
    if settings.SITE_URL.endswith("/"):
        problems.append(Error("SITE_URL must not end with a slash.", id="autoresponder.E001"))
    return problems
