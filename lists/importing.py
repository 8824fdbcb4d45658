"""
CSV imports of subscribers: one service, run_import(job), behind the dashboard
upload (a Celery task, lists.tasks.run_import), the `import_subscribers`
command and the API.

Modes (ImportJob.mode):
- add: new addresses are created and subscribed; addresses already on the list
  are skipped and left exactly as they are.
- upsert: as add, and for addresses already known, filled cells overwrite the
  name and time zone (empty cells keep them) and attributes merge; an
  unconfirmed subscription is renewed. A confirmed subscription stays as it is
  and an import never revives an unsubscribe (as services.subscribe).
- unsubscribe: the addresses are unsubscribed from the list (from every list
  when the job has none).
- suppress: the addresses join the suppression list.

New subscriptions are confirmed at once when the importer vouches for consent
(`job.confirmed`; the consent record says so), otherwise they wait, unconfirmed,
and a follow-up task asks each for confirmation by mail in batches
(services.request_confirmation applies its per-address limits).

Every data row ends up in exactly one count: created (a new subscription, or a
new suppression), updated (upsert: already known; unsubscribe: unsubscribed),
skipped (a duplicate within the file, suppressed, erased on request,
blocklisted, already on the list, nothing to unsubscribe, already suppressed)
or invalid (see lists.importing_csv). Skipped and invalid rows are listed with
their line and reason in a problem report (CSV), the first ones also on the job.

The Postgres work is in lists.importing_pg (COPY and set-based SQL), the
portable work in lists.importing_orm; reading and checking rows in
lists.importing_csv.
"""

import csv
import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from . import importing_orm, importing_pg
from .exporting import escape_cell
from .importing_csv import BINARY_MESSAGE, CSVFileError, RowReader, auto_mapping, sniff, validate_mapping
from .models import ImportJob, Subscription, Tag
from .services import request_confirmation
from .validation import InvalidSubscriber, clean_tag

log = logging.getLogger(__name__)

UPLOAD_DIR = "imports"
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
ERRORS_KEPT = 100  # problems shown on the job page; the report file has them all
PROGRESS_EVERY = 0.5  # seconds between progress writes
CONFIRMATION_BATCH = 200
SPREADSHEET_SUFFIXES = (".xlsx", ".xls", ".xlsm", ".ods", ".numbers", ".pdf", ".zip")


# --- Uploads and jobs --------------------------------------------------------------------


def max_bytes():
    return getattr(settings, "IMPORT_MAX_BYTES", DEFAULT_MAX_BYTES)


def save_upload(uploaded):
    """Store an uploaded file under MEDIA_ROOT/imports/ with a random name; returns that name.

    Raises CSVFileError (storing nothing) when it is too large or not a CSV file.
    """
    limit = max_bytes()
    if uploaded.size > limit:
        raise CSVFileError(
            f"The file is {uploaded.size / 1e6:.1f} MB; the limit is {limit / 1e6:.0f} MB. "
            "Split it into smaller files and import them one after the other."
        )
    if uploaded.name.lower().endswith(SPREADSHEET_SUFFIXES):
        raise CSVFileError(BINARY_MESSAGE)
    name = f"{UPLOAD_DIR}/{secrets.token_urlsafe(18)}.csv"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in uploaded.chunks():
            out.write(chunk)
    try:
        sniff(path)
    except CSVFileError:
        path.unlink()
        raise
    return name


def source_path(job):
    """The job's CSV file: a name under MEDIA_ROOT (uploads) or an absolute path (the command)."""
    path = Path(job.file)
    if path.is_absolute():
        return path
    root = Path(settings.MEDIA_ROOT).resolve()
    resolved = (root / path).resolve()
    if root not in resolved.parents:
        raise CSVFileError("The import's file name is not valid.")
    return resolved


def report_path(job):
    """The job's problem report file, or None."""
    if not job.error_report:
        return None
    root = (Path(settings.MEDIA_ROOT) / UPLOAD_DIR).resolve()
    path = (Path(settings.MEDIA_ROOT) / job.error_report).resolve()
    return path if root in path.parents and path.is_file() else None


def clean_tags(names):
    """Tag names for an import, checked as services.tag does; raises InvalidSubscriber."""
    return sorted({clean_tag(n) for n in names if str(n).strip()})


def start(job):
    """Queue the import once the surrounding transaction commits."""
    from .tasks import run_import as task  # tasks call back into this module

    transaction.on_commit(lambda: task.delay(job.pk))


def restart(job):
    """Queue a failed or stuck (running) import again; returns False when it is done or its file is gone."""
    if job.status not in (ImportJob.FAILED, ImportJob.RUNNING) or not job.mapping:
        return False
    try:
        if not source_path(job).is_file():
            return False
    except CSVFileError:
        return False
    ImportJob.objects.filter(pk=job.pk).update(
        status=ImportJob.PENDING, failure="", started_at=None, finished_at=None, processed_bytes=0, rows=0,
        created=0, updated=0, skipped=0, invalid=0, errors=[], error_report="",
    )
    start(job)
    return True


# --- Running -----------------------------------------------------------------------------------


@dataclass
class Details:
    """What the engines write besides the rows: the consent record, reasons, tags."""

    consent_form: str
    consent_text: str
    unsubscribe_reason: str
    suppression_detail: str
    tag_ids: list


def consent_form(job):
    """The consent record's `form` of this job's subscriptions (also how the follow-up finds them)."""
    return f"CSV import #{job.pk}"


def _details(job):
    who = job.created_by.get_username() if job.created_by_id else "an operator on the command line"
    source = (job.original_name or Path(job.file).name)[:120]
    if job.confirmed:
        text = (f"Imported from {source} by {who}, who confirmed that these people agreed to receive mail "
                "from this list.")
    else:
        text = f"Imported from {source} by {who}; each address was asked to confirm by mail."
    tags = clean_tags(job.tags or [])
    Tag.objects.bulk_create([Tag(name=n) for n in tags], ignore_conflicts=True)
    return Details(
        consent_form=consent_form(job), consent_text=text,
        unsubscribe_reason=f"Unsubscribed by CSV import #{job.pk} ({source})"[:200],
        suppression_detail=f"CSV import #{job.pk} ({source}) by {who}",
        tag_ids=list(Tag.objects.filter(name__in=tags).values_list("pk", flat=True)),
    )


def run_import(job, *, progress=None, portable=False):
    """Import the job's file according to its mode, mapping and list; returns the job.

    Claims the job (a job that is not waiting is left alone, so a task delivered
    twice imports once), then fills its counters as it goes, calling
    `progress(job)` after each chunk, and marks it done or failed. `portable`
    forces the ORM path on Postgres (tests compare both paths).
    """
    if not _claim(job):
        return job
    try:
        _run(job, progress, portable)
    except (CSVFileError, InvalidSubscriber) as exc:
        _fail(job, str(exc))
    except Exception as exc:
        log.exception("Import %s failed", job.pk)
        _fail(job, f"The import stopped because of an unexpected error ({exc.__class__.__name__}). Running the same "
                   "file again is safe: rows already imported are recognised.")
        raise
    else:
        _after(job)
    return job


def _claim(job):
    claimed = ImportJob.objects.filter(pk=job.pk, status=ImportJob.PENDING).update(
        status=ImportJob.RUNNING, started_at=timezone.now()
    )
    job.refresh_from_db()
    return claimed == 1


def _run(job, progress, portable):
    path = source_path(job)
    if not path.is_file():
        raise CSVFileError("The file to import is gone. Upload it again.")
    if job.mode in (ImportJob.ADD, ImportJob.UPSERT) and job.mailing_list_id is None:
        raise CSVFileError("Choose the list to import into.")
    sniffed = sniff(path)
    mapping = job.mapping or auto_mapping(sniffed.header)
    problems = validate_mapping(sniffed.header, mapping)
    if problems:
        raise CSVFileError(" ".join(problems))
    job.total_bytes, job.mapping = path.stat().st_size, mapping
    ImportJob.objects.filter(pk=job.pk).update(total_bytes=job.total_bytes, mapping=mapping)
    reader = RowReader(path, sniffed, mapping)
    engine = importing_pg if connection.vendor == "postgresql" and not portable else importing_orm
    with ProblemReport(job) as report:
        engine.run(job, reader, details=_details(job), report=report,
                   on_chunk=_ticker(job, reader, progress), finish=_finisher(job, reader, report))


def _ticker(job, reader, progress):
    """Called after each chunk: saves the counters now and then, tells `progress`."""
    last = [0.0]

    def tick():
        job.rows, job.invalid, job.processed_bytes = reader.rows, reader.invalid, reader.bytes_read
        if time.monotonic() - last[0] >= PROGRESS_EVERY:
            last[0] = time.monotonic()
            ImportJob.objects.filter(pk=job.pk).update(rows=job.rows, invalid=job.invalid,
                                                       processed_bytes=job.processed_bytes)
        if progress:
            progress(job)

    return tick


def _finisher(job, reader, report):
    """Called by the engine once the rows are in (inside its transaction, on Postgres)."""

    def finish(created, updated, skipped):
        report.close()
        job.rows, job.invalid = reader.rows, reader.invalid
        job.created, job.updated, job.skipped = created, updated, skipped
        job.errors, job.error_report = report.first, report.name
        job.status, job.finished_at, job.processed_bytes = ImportJob.DONE, timezone.now(), job.total_bytes
        job.save(update_fields=["rows", "invalid", "created", "updated", "skipped", "errors", "error_report",
                                "status", "finished_at", "processed_bytes"])
        if job.rows != created + updated + skipped + job.invalid:
            log.error("Import %s counts do not add up: %s rows", job.pk, job.rows)

    return finish


def _fail(job, message):
    job.status, job.failure, job.finished_at = ImportJob.FAILED, message, timezone.now()
    ImportJob.objects.filter(pk=job.pk).update(status=job.status, failure=message, finished_at=job.finished_at)


def _after(job):
    """Remove the uploaded file (the report keeps what needs attention) and ask for confirmations."""
    if not Path(job.file).is_absolute():
        source_path(job).unlink(missing_ok=True)
    if needs_confirmations(job):
        from .tasks import send_import_confirmations

        transaction.on_commit(lambda: send_import_confirmations.delay(job.pk))


def needs_confirmations(job):
    return (job.status == ImportJob.DONE and job.mode in (ImportJob.ADD, ImportJob.UPSERT)
            and not job.confirmed and job.created + job.updated > 0)


def request_import_confirmations(job, *, after_id=0, batch=CONFIRMATION_BATCH):
    """Ask the next `batch` unconfirmed subscriptions of this import for confirmation.

    Returns the last subscription id handled, to pass as `after_id` next time, or
    None when there are no more. services.request_confirmation skips addresses
    that were mailed recently, so running a batch twice sends nothing twice.
    """
    subscriptions = list(
        Subscription.objects.filter(
            mailing_list_id=job.mailing_list_id, consent_form=consent_form(job), status=Subscription.UNCONFIRMED,
            pk__gt=after_id,
        ).select_related("subscriber", "mailing_list").order_by("pk")[:batch]
    )
    for subscription in subscriptions:
        request_confirmation(subscription)
    return subscriptions[-1].pk if len(subscriptions) == batch else None


# --- The problem report ------------------------------------------------------------------------


class ProblemReport:
    """Skipped and invalid rows: all in a CSV file under MEDIA_ROOT/imports/, the first ones on the job."""

    def __init__(self, job):
        self.name = f"{UPLOAD_DIR}/{secrets.token_urlsafe(18)}-problems.csv"
        self.path = Path(settings.MEDIA_ROOT) / self.name
        self.first, self.count = [], 0
        self._file = None

    def __enter__(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", newline="", encoding="utf-8")
        self._write = csv.writer(self._file).writerow
        self._write(("line", "email", "reason"))
        return self

    def add(self, problems):
        for line, email, reason in problems:
            self.count += 1
            if len(self.first) < ERRORS_KEPT:
                self.first.append({"line": line, "email": email, "reason": reason})
            self._write((line, escape_cell(email), reason))

    def close(self):
        if self._file and not self._file.closed:
            self._file.close()
        if not self.count:
            self.path.unlink(missing_ok=True)
            self.name = ""

    def __exit__(self, kind, error, trace):
        self.close()
        if kind is not None:
            self.path.unlink(missing_ok=True)
