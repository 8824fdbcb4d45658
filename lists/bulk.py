"""
Bulk upsert of subscribers (the REST API's POST /api/v1/subscribers/bulk/): up
to 10,000 in one call, written set-based by the CSV import's own engines
(lists.importing_pg: COPY into a staging table and one INSERT … ON CONFLICT;
lists.importing_orm on other databases), so an API upsert follows exactly the
import's rules: duplicates within the request, suppressed, erased and
blocklisted addresses are skipped; an import never revives an unsubscribe; a
confirmed subscription stays as it is; attributes merge.

Each call is recorded as an ImportJob ("API request by bob"), which is the
consent record's form and lets the import's follow-up task ask new unconfirmed
subscribers for confirmation by mail.

Items are checked one by one with lists.validation, as the signup form and the
import check them; an invalid item is reported with its index and reason and
the valid ones still go in. subscriber.created is announced (lists.events) for
the subscribers the call created, set-based, in the import's transaction.
"""

import json
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models.functions import Lower

from . import events, importing, importing_orm, importing_pg
from .importing_csv import FAST_EMAIL
from .models import ImportJob, Subscriber, Tag
from .validation import MAX_EMAIL, InvalidSubscriber, clean_attributes, clean_name, clean_time_zone, normalize_email

MAX_ITEMS = 10_000
MODES = (ImportJob.ADD, ImportJob.UPSERT)
ITEM_FIELDS = {"email", "name", "time_zone", "attributes"}
_to_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


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

    `items` is a list of {"email", "name", "time_zone", "attributes"} dicts
    (only email is required). `confirmed=True`: the caller vouches for consent
    and new subscriptions are confirmed at once; False: they wait, unconfirmed,
    and each gets a confirmation mail after the commit. Raises ValueError for
    a bad mode or too many items, InvalidSubscriber for a bad tag; nothing is
    written then.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; use one of {', '.join(MODES)}.")
    if len(items) > MAX_ITEMS:
        raise ValueError(f"At most {MAX_ITEMS} subscribers per request; split the rest into more requests.")
    tag_names = importing.clean_tags(tags)
    job = ImportJob.objects.create(
        mailing_list=mailing_list, created_by=user, mode=mode, confirmed=confirmed, tags=tag_names,
        original_name="API request", status=ImportJob.RUNNING, total_bytes=0,
    )
    rows, report = _Items(items), _Report()
    engine = importing_pg if connection.vendor == "postgresql" else importing_orm
    engine.run(job, rows, details=_details(job, user, tag_names), report=report, on_chunk=lambda *counts: None,
               finish=_finisher(job, rows, report))
    if importing.needs_confirmations(job):
        from .tasks import send_import_confirmations

        transaction.on_commit(lambda: send_import_confirmations.delay(job.pk))
    return BulkResult(job.pk, job.created, job.updated, job.skipped, job.invalid, report.problems)


def _details(job, user, tag_names):
    who = user.get_username() if user else "an API client"
    if job.confirmed:
        text = f"Added through the API by {who}, who confirmed that these people agreed to receive mail from this list."
    else:
        text = f"Added through the API by {who}; each address was asked to confirm by mail."
    Tag.objects.bulk_create([Tag(name=n) for n in tag_names], ignore_conflicts=True)
    return importing.Details(
        consent_form=importing.consent_form(job), consent_text=text,
        unsubscribe_reason="", suppression_detail="",
        tag_ids=list(Tag.objects.filter(name__in=tag_names).values_list("pk", flat=True)),
    )


def _finisher(job, rows, report):
    """Runs inside the engine's transaction once the rows are in: counts, then announcements."""
    known = _known_addresses(rows.items) if events.wanted(events.SUBSCRIBER_CREATED) else None

    def finish(created, updated, skipped):
        job.rows, job.invalid = rows.rows, rows.invalid
        job.created, job.updated, job.skipped = created, updated, skipped
        job.errors, job.status = report.problems[: importing.ERRORS_KEPT], ImportJob.DONE
        job.save(update_fields=["rows", "invalid", "created", "updated", "skipped", "errors", "status"])
        if known is not None and created:
            _announce_created(rows.items, known)

    return finish


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


# --- What the engines read and write -----------------------------------------------------------


class _Items:
    """The request's items as the import engines read rows: (index, email, name, time_zone,
    attributes JSON), invalid ones collected in `.problems` as (index, email, reason)."""

    def __init__(self, items):
        self.items, self.problems = items, []
        self.rows = self.invalid = self.bytes_read = 0

    def __iter__(self):
        for index, item in enumerate(self.items):
            self.rows += 1
            try:
                yield (index, *check_item(item))
            except InvalidSubscriber as exc:
                self.invalid += 1
                email = item.get("email") if isinstance(item, dict) else None
                self.problems.append((index, email if isinstance(email, str) else "", exc.message))


def check_item(item):
    """(email, name, time_zone, attributes JSON or "") for a valid item; raises InvalidSubscriber."""
    if not isinstance(item, dict):
        raise InvalidSubscriber("subscribers", "Each item must be an object with at least an email.")
    unknown = set(item) - ITEM_FIELDS
    if unknown:
        raise InvalidSubscriber("subscribers", f"Unknown field {sorted(unknown)[0]!r}; use {', '.join(sorted(ITEM_FIELDS))}.")
    email = item.get("email")
    if isinstance(email, str) and len(email) <= MAX_EMAIL and FAST_EMAIL.match(email):
        local, _, domain = email.rpartition("@")
        email = f"{local}@{domain.lower()}"
    else:
        email = normalize_email(email if isinstance(email, str) else None)
    attributes = clean_attributes(item.get("attributes"))
    return email, clean_name(item.get("name")), clean_time_zone(item.get("time_zone")), (
        _to_json(attributes) if attributes else "")


class _Report:
    """The engines' problem rows, kept in memory (a request holds at most 10,000)."""

    def __init__(self):
        self.problems = []

    def add(self, problems):
        for index, email, reason in problems:
            if reason.startswith("duplicate of line "):
                reason = "duplicate of item " + reason[len("duplicate of line "):]
            self.problems.append({"index": index, "email": email, "reason": reason})
        self.problems.sort(key=lambda p: p["index"])

    def close(self):
        pass
