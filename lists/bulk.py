"""
Bulk upsert of subscribers (the REST API's POST /api/v1/subscribers/bulk/): up
to 10,000 in one call, through the CSV import's own service,
lists.importing.run_import — COPY into a staging table and set-based
INSERT … ON CONFLICT on Postgres, the portable path elsewhere — so an API upsert
follows exactly the import's rules: duplicates within the request, suppressed,
erased and blocklisted addresses are skipped; an import never revives an
unsubscribe; a confirmed subscription stays as it is; attributes merge.

The items are written to a temporary CSV file, one line each, and run as an
ImportJob ("API request", by the calling user), which is the consent record's
form and lets the import's follow-up task ask new unconfirmed subscribers for
confirmation by mail. As in a CSV import, attribute values are stored as text
(numbers and true/false in their JSON spelling), which is what search and
segments compare against.

Items are checked by the import's row checks (the signup form's rules); an
invalid or skipped item is reported with its index and reason and the valid
ones still go in. subscriber.created is announced (lists.events) for the
subscribers the call created.
"""

import csv
import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction
from django.db.models.functions import Lower

from . import events, importing
from .exporting import FORMULA_STARTS
from .lookups import ATTRIBUTE_KEY
from .models import ImportJob, Subscriber
from .validation import MAX_ATTRIBUTES, InvalidSubscriber

MAX_ITEMS = 10_000
MODES = (ImportJob.ADD, ImportJob.UPSERT)
ITEM_FIELDS = {"email", "name", "time_zone", "attributes"}
HEADER = ("email", "name", "time_zone")


@dataclass
class BulkResult:
    job_id: int
    created: int = 0
    updated: int = 0
    skipped: int = 0
    invalid: int = 0
    problems: list = field(default_factory=list)  # [{"index", "email", "reason"}], by index


def upsert_subscribers(mailing_list, items, *, mode=ImportJob.UPSERT, confirmed=True, tags=(), user=None):
    """Add (mode "add") or add and update (mode "upsert") `items` on `mailing_list`.

    `items` is a list of {"email", "name", "time_zone", "attributes"} dicts (only
    email is required). `confirmed=True`: the caller vouches for consent and new
    subscriptions are confirmed at once; False: they wait, unconfirmed, and each
    gets a confirmation mail. Raises ValueError (InvalidSubscriber for a bad tag)
    for a request that cannot run at all; nothing is written then.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    if len(items) > MAX_ITEMS:
        raise ValueError(f"At most {MAX_ITEMS} subscribers per request; split the rest into more requests.")
    tag_names = importing.clean_tags(tags)
    rows, problems = _shaped(items)
    keys = sorted({key for _, row in rows for key in row[3]})
    if len(keys) > MAX_ATTRIBUTES:
        raise InvalidSubscriber("subscribers", f"At most {MAX_ATTRIBUTES} different attribute names per request.")
    known = _known_addresses(items) if events.wanted(events.SUBSCRIBER_CREATED) else None
    with tempfile.TemporaryDirectory(prefix="api-bulk-") as folder:
        job = _run(mailing_list, _write(Path(folder) / "subscribers.csv", rows, keys), keys, mode=mode,
                   confirmed=confirmed, tags=tag_names, user=user)
    malformed = len(problems)
    problems += _job_problems(job, [index for index, _ in rows])
    if known is not None and job.created:
        with transaction.atomic():
            _announce_created(items, known)
    return BulkResult(job.pk, job.created, job.updated, job.skipped, job.invalid + malformed,
                      sorted(problems, key=lambda p: p["index"]))


# --- Items to CSV lines ------------------------------------------------------------------------------


def _shaped(items):
    """(index, (email, name, time_zone, {attribute: text})) for the well-formed items, and a
    problem for each other one. Addresses, names and time zones are checked by the import."""
    rows, problems = [], []
    for index, item in enumerate(items):
        try:
            rows.append((index, _shape(item)))
        except InvalidSubscriber as exc:
            email = item.get("email") if isinstance(item, dict) else None
            problems.append({"index": index, "email": email if isinstance(email, str) else "",
                             "reason": exc.message})
    return rows, problems


def _shape(item):
    """Checks the import cannot make on a CSV line: the item's shape and types. Kept lean (it runs
    10,000 times a request); the values' own rules (address, lengths, time zone, control
    characters) are the import's row checks."""
    if type(item) is not dict:
        raise InvalidSubscriber("subscribers", "Each item must be an object with at least an email.")
    if not item.keys() <= ITEM_FIELDS:
        unknown = sorted(set(item) - ITEM_FIELDS)[0]
        raise InvalidSubscriber("subscribers", f"Unknown field {unknown!r}; use {', '.join(sorted(ITEM_FIELDS))}.")
    texts = (item.get("email") or "", item.get("name") or "", item.get("time_zone") or "")
    if not all(type(text) is str for text in texts):
        raise InvalidSubscriber("subscribers", "email, name and time_zone must be text.")
    attributes = _cells(item["attributes"]) if item.get("attributes") else {}
    for text in (*texts, *attributes.values()):
        if "\n" in text or "\r" in text:
            raise InvalidSubscriber("subscribers", "Line breaks are not allowed in any field.")
    return (*texts, attributes)


def _cells(attributes):
    """Attribute values as the import stores them: text ("" leaves one unset)."""
    if type(attributes) is not dict:
        raise InvalidSubscriber("attributes", "Attributes must be a set of names and values.")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidSubscriber("attributes", f"At most {MAX_ATTRIBUTES} attributes are allowed.")
    cells = {}
    for key, value in attributes.items():
        if not ATTRIBUTE_KEY.match(key):
            raise InvalidSubscriber("attributes", f"Name the attribute {key!r} with letters, digits, _ . or - only.")
        cells[key] = _cell(key, value)
    return cells


def _cell(key, value):
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)) or (
            isinstance(value, list) and not any(isinstance(v, (list, dict)) for v in value)):
        return json.dumps(value, ensure_ascii=False)
    raise InvalidSubscriber("attributes", f"The value of {key!r} must be text, a number, true/false or a list.")


def _write(path, rows, keys):
    """The rows as a CSV file whose data line n+2 is row n (the import reports problems by line)."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        write = csv.writer(out).writerow
        write([*HEADER, *(f"attributes.{key}" for key in keys)])
        for _, (email, name, time_zone, attributes) in rows:
            write([email, name, time_zone, *(attributes.get(key, "") for key in keys)])
    return path


def _run(mailing_list, path, keys, *, mode, confirmed, tags, user):
    columns = [*HEADER, *(f"attributes.{key}" for key in keys)]
    job = ImportJob.objects.create(
        mailing_list=mailing_list, created_by=user, mode=mode, confirmed=confirmed, tags=tags, file=str(path),
        original_name="API request", mapping={column: column for column in columns},
    )
    importing.run_import(job)
    if job.status != ImportJob.DONE:
        raise ValueError(job.failure or "The subscribers could not be imported.")
    return job


# --- What the import reported --------------------------------------------------------------------------


def _job_problems(job, indexes):
    """The import's skipped and invalid rows, by item index; the report file is removed."""
    path = importing.report_path(job)
    if path is None:
        return []
    with open(path, encoding="utf-8", newline="") as report:
        found = [_problem(line, email, reason, indexes) for line, email, reason in list(csv.reader(report))[1:]]
    path.unlink(missing_ok=True)
    ImportJob.objects.filter(pk=job.pk).update(error_report="")
    return found


def _problem(line, email, reason, indexes):
    if reason.startswith("duplicate of line "):
        reason = f"duplicate of item {indexes[int(reason.rsplit(' ', 1)[1]) - 2]}"
    # The report escapes cells against spreadsheet formulas (lists.exporting.escape_cell): undo it.
    if email[:1] == "'" and email[1:].startswith(FORMULA_STARTS):
        email = email[1:]
    return {"index": indexes[int(line) - 2], "email": email, "reason": reason}


# --- subscriber.created ------------------------------------------------------------------------------


def _addresses(items):
    return {item["email"].strip().lower() for item in items
            if isinstance(item, dict) and isinstance(item.get("email"), str)}


def _known_addresses(items):
    """The request's addresses that were already subscribers before it ran."""
    return set(Subscriber.objects.annotate(key=Lower("email")).filter(key__in=_addresses(items))
               .values_list("key", flat=True))


def _announce_created(items, known):
    new = _addresses(items) - known
    subscribers = Subscriber.objects.annotate(key=Lower("email")).filter(key__in=new).order_by("pk")
    events.publish(events.SUBSCRIBER_CREATED, lambda: [events.created_payload(s) for s in subscribers])
