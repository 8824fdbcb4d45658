"""
What the benchmarks share: the environment of a run in its own database,
Django in the bench process, set-based seeding (INSERT … SELECT) that
keeps up with new columns, and the CPU a process or a Postgres backend has used
(read from /proc: on a shared machine wall times follow the load, CPU times
much less). The benchmarks run as scripts (`python
bench/<name>.py`), so this folder is on their path and they `import common`.
"""

import os
import sys
import time
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")


def environment(database, data_dir, **overrides):
    """The environment variables of a bench process (this one or a child): its own database and
    data folder, no Redis, mail to the outbox, Celery in memory; `overrides` change or add some."""
    return {
        **os.environ, "DATABASE_URL": f"{SERVER}/{database}", "DEBUG": "0", "DATA_DIR": str(data_dir),
        "SECRET_KEY": "bench-only-secret-key-0123456789-abcdefghijklmnop", "SITE_URL": "http://127.0.0.1:8000",
        "ALLOWED_HOSTS": "127.0.0.1", "CELERY_BROKER_URL": "memory://", "EMAIL_URL": "outbox://",
        "LOG_LEVEL": "WARNING", "REDIS_URL": "", "ANYMAIL_WEBHOOK_SECRET": "bench:bench-only-webhook-secret",
        "DJANGO_SETTINGS_MODULE": "autoresponder.settings", **overrides,
    }


def setup_django():
    """Django in this process, with the settings that os.environ holds."""
    sys.path.insert(0, str(BASE))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "autoresponder.settings")
    import django

    django.setup()


def insert_select(cursor, model, exprs, source):
    """INSERT INTO model's table SELECT … FROM source, with `exprs` {column: SQL} and every other
    column filled from the field's default (or NULL), so new columns do not break the bench.
    Returns the seconds it took."""
    from django.db import connection
    from django.db.models.fields import NOT_PROVIDED

    columns, values = [], []
    for field in model._meta.concrete_fields:
        if field.primary_key:
            continue
        columns.append(field.column)
        if field.column in exprs:
            values.append(exprs[field.column])
        elif field.default is not NOT_PROVIDED:
            prepared = field.get_db_prep_save(field.get_default(), connection)
            values.append(cursor.mogrify("%s", [prepared]).decode())
        elif getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            values.append("now()")
        elif field.null:
            values.append("NULL")
        else:
            values.append("''")
    started = time.perf_counter()
    cursor.execute(f"INSERT INTO {model._meta.db_table} ({', '.join(columns)}) SELECT {', '.join(values)} FROM {source}")
    return time.perf_counter() - started


def process_cpu(pid):
    """CPU seconds (user + system) process `pid` has used so far; None once it is gone (or not on
    this machine, as a remote Postgres backend is not)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_cpu():
    """CPU seconds the Postgres backend of this process's Django connection has used (None if the
    server is not on this machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return process_cpu(cursor.fetchone()[0])
