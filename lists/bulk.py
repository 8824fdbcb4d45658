"""
Bulk upsert of subscribers (the REST API's POST /api/v1/subscribers/bulk/): up
to 10,000 in one call, by the CSV import's rules and with its set-based merge,
but typed: an attribute keeps its JSON type (number, true/false, null, list,
object), as the single-subscriber API stores it.

Each item is checked here: its shape, the import's row checks for the address,
name and time zone (lists.importing_csv.check_fields) and the rules every entry
point applies to attributes (lists.validation.clean_attributes). An invalid item
is reported with its index and reason while the valid ones go in.

On Postgres the valid items are COPied into the import's staging table with
their attributes as jsonb, and the import's own merge (lists.importing_pg.merge)
runs on them: duplicates within the request, suppressed, erased and blocklisted
addresses are skipped; an import never revives an unsubscribe; a confirmed
subscription stays as it is; attributes merge. Other databases go through the
portable engine (lists.importing_orm) with the same rules.

One transaction holds it all: the ImportJob ("API request", by the calling
user; the consent record's form, and the follow-up that asks new unconfirmed
subscribers to confirm), the rows, and the hooks' events (subscriber.created,
subscription.confirmed: lists.importing_events). A crash anywhere leaves none of
them, and no event is lost between the rows' commit and its own.
"""

import io
import json
import re
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.utils import timezone

from . import importing, importing_orm, importing_pg
from .importing_csv import check_fields
from .lookups import ATTRIBUTE_KEY
from .models import ErasedAddress, ImportJob
from .services import erased_digest
from .validation import MAX_EMAIL, InvalidSubscriber, clean_attributes

MAX_ITEMS = 10_000
MODES = (ImportJob.ADD, ImportJob.UPSERT)
ITEM_FIELDS = {"email", "name", "time_zone", "attributes"}
SOURCE = "API request"  # the job's original_name, and so the consent record's text
# A lone surrogate (JSON allows "\ud800") cannot be stored as UTF-8.
SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class BulkResult:
    job_id: int
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    problems: list = field(default_factory=list)  # [{"index", "email", "reason"}], by index


def upsert_subscribers(mailing_list, items, *, mode=ImportJob.UPSERT, confirmed=True, tags=(), user=None,
                       portable=False):
    """Add (mode "add") or add and update (mode "upsert") `items` on `mailing_list`.

    `items` is a list of {"email", "name", "time_zone", "attributes"} dicts (only
    email is required). `confirmed=True`: the caller vouches for consent and new
    subscriptions are confirmed at once; False: they wait, unconfirmed, and each
    gets a confirmation mail. Raises ValueError (InvalidSubscriber for a bad tag)
    for a request that cannot run at all; nothing is written then. `portable`
    forces the ORM engine on Postgres (tests compare both).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    if len(items) > MAX_ITEMS:
        raise ValueError(f"At most {MAX_ITEMS} subscribers per request; split the rest into more requests.")
    tag_names = importing.clean_tags(tags)
    rows, invalid = checked(items)
    merge = _merge_portable if portable or connection.vendor != "postgresql" else _merge_pg
    with transaction.atomic():
        job = ImportJob.objects.create(
            mailing_list=mailing_list, created_by=user, mode=mode, confirmed=confirmed, tags=tag_names,
            original_name=SOURCE, status=ImportJob.RUNNING, started_at=timezone.now(), rows=len(items),
            invalid=len(invalid),
        )
        skipped = merge(job, rows, importing._details(job))
        job.status, job.finished_at = ImportJob.DONE, timezone.now()
        job.save(update_fields=["created", "updated", "skipped", "status", "finished_at"])
        if importing.needs_confirmations(job):
            from .tasks import send_import_confirmations  # tasks call back into lists.importing

            transaction.on_commit(lambda: send_import_confirmations.delay(job.pk))
    problems = sorted([*invalid, *(_problem(*p) for p in skipped)], key=lambda p: p["index"])
    return BulkResult(job.pk, job.created, job.updated, job.skipped, job.invalid, problems)


# --- Checking the items ----------------------------------------------------------------------------


def checked(items):
    """(index, email, name, time_zone, attributes, attributes as JSON text) for each valid item, and
    {"index", "email", "reason"} for each other one."""
    rows, problems = [], []
    for index, item in enumerate(items):
        try:
            rows.append((index, *_check(item)))
        except InvalidSubscriber as exc:
            email = item.get("email") if type(item) is dict else None
            problems.append({"index": index, "email": email[:MAX_EMAIL] if type(email) is str else "",
                             "reason": exc.message})
    return rows, problems


def _check(item):
    """Kept lean: it runs 10,000 times a request."""
    if type(item) is not dict:
        raise InvalidSubscriber("subscribers", "Each item must be an object with at least an email.")
    if not item.keys() <= ITEM_FIELDS:
        unknown = sorted(set(item) - ITEM_FIELDS)[0]
        raise InvalidSubscriber("subscribers", f"Unknown field {unknown!r}; use {', '.join(sorted(ITEM_FIELDS))}.")
    texts = (item.get("email") or "", item.get("name") or "", item.get("time_zone") or "")
    if not all(type(text) is str for text in texts):
        raise InvalidSubscriber("subscribers", "email, name and time_zone must be text.")
    fields = check_fields(*texts)
    if type(fields) is str:
        raise InvalidSubscriber("subscribers", fields)
    attributes = _attributes(item.get("attributes"))
    text = json.dumps(attributes, ensure_ascii=False, separators=(",", ":")) if attributes else "{}"
    if SURROGATE.search("".join((*texts, text))):
        raise InvalidSubscriber("subscribers", "bad encoding (text that is not valid Unicode)")
    return (*fields, attributes, text)


def _attributes(value):
    if value is None:
        return {}
    attributes = clean_attributes(value)
    for key in attributes:
        if not ATTRIBUTE_KEY.match(key):
            raise InvalidSubscriber("attributes", f"Name the attribute {key!r} with letters, digits, _ . or - only.")
    return attributes


# --- Merging: the import's engines -------------------------------------------------------------------


class _Problems(list):
    """What the engines report skipped: (line, email, reason), the line being the item's index."""

    def add(self, problems):
        self.extend(problems)


def _finisher(job):
    def finish(created, updated, skipped):
        job.created, job.updated, job.skipped = created, updated, skipped

    return finish


def _merge_pg(job, rows, details):
    """Stage the rows as the CSV import does, attributes as jsonb, and run its merge; returns the skipped."""
    skipped = _Problems()
    with connection.cursor() as cursor:
        try:
            digests = _stage(cursor, rows)
            importing_pg.merge(job, digests=digests, details=details, report=skipped, finish=_finisher(job))
        finally:
            importing_pg._drop_staging(cursor)  # the merge's tables too; the connection is kept for others
    return skipped


def _stage(cursor, rows):
    """import_row as lists.importing_pg.merge reads it, attributes copied as given instead of computed
    from text columns; returns whether digests of erased addresses were staged."""
    importing_pg._drop_staging(cursor)
    cursor.execute(
        "CREATE TEMP TABLE import_row (line integer NOT NULL, email text NOT NULL, name text NOT NULL,"
        " time_zone text NOT NULL, attributes jsonb NOT NULL, digest text,"
        " key text GENERATED ALWAYS AS (lower(email)) STORED)"
    )
    cursor.execute(
        "CREATE TEMP TABLE import_problem (line integer NOT NULL, email text NOT NULL, reason text NOT NULL)"
    )
    digests = ErasedAddress.objects.exists()  # no erased addresses (the usual case): no hashing
    # COPY's text format: the checks left no tab or line break in any value (JSON escapes its own), so a
    # row is its values joined by tabs, with backslashes doubled.
    lines = []
    for index, email, name, time_zone, _, text in rows:
        line = "\t".join((str(index), email, name, time_zone, text, *((erased_digest(email),) if digests else ())))
        lines.append(line.replace("\\", "\\\\") if "\\" in line else line)
    if lines:
        columns = "line, email, name, time_zone, attributes" + (", digest" if digests else "")
        cursor.copy_expert(f"COPY import_row ({columns}) FROM STDIN", io.StringIO("\n".join(lines) + "\n"))
    return digests


class _Rows:
    """The checked rows as lists.importing_orm reads a CSV file's: (line, email, name, time_zone, values),
    `values` being the attributes themselves."""

    def __init__(self, rows):
        self.rows, self.problems = [row[:5] for row in rows], []

    def __iter__(self):
        return iter(self.rows)

    @staticmethod
    def attributes(values):
        return values


def _merge_portable(job, rows, details):
    skipped = _Problems()
    importing_orm.run(job, _Rows(rows), details=details, report=skipped, on_chunk=lambda: None,
                      finish=_finisher(job))
    return skipped


def _problem(line, email, reason):
    if reason.startswith("duplicate of line "):
        reason = f"duplicate of item {reason.rsplit(' ', 1)[1]}"
    return {"index": line, "email": email, "reason": reason}
