"""
The portable import, for databases other than Postgres (the embedded SQLite of
`make run`): the rules of lists.importing_pg, applied batch by batch through the
ORM, each batch in its own transaction. Slower, and it remembers every address
seen in the file to spot duplicates (about 100 bytes each), which suits the
lists an embedded database holds; Postgres keeps that work in the database.
"""

from itertools import islice

from django.db import transaction
from django.db.models.functions import Lower
from django.utils import timezone

from . import events, hygiene_import, importing_events
from .models import ErasedAddress, ImportJob, Subscriber, Subscription, Suppression
from .services import erased_digest

BATCH_ROWS = 500


def run(job, reader, *, details, report, on_chunk, finish):
    """Import batch by batch (see lists.importing.run_import for the arguments)."""
    batcher = _Batcher(job, details, reader)
    rows = iter(reader)
    while batch := list(islice(rows, BATCH_ROWS)):
        with transaction.atomic():
            problems = batcher.apply(batch)
        report.add(sorted([*reader.problems, *problems]))
        reader.problems.clear()
        on_chunk()
    report.add(sorted(reader.problems))
    reader.problems.clear()
    if job.mode in (ImportJob.ADD, ImportJob.UPSERT):
        with transaction.atomic():
            batcher.hygiene.mark()
    finish(*batcher.totals)


class _Batcher:
    """Applies batches of checked rows and keeps the running (created, updated, skipped) totals."""

    def __init__(self, job, details, reader):
        self.job, self.details, self.reader = job, details, reader
        self.seen = {}  # lower-cased address -> line of its first row
        self.digests = ErasedAddress.objects.exists()
        self.totals = [0, 0, 0]
        self.hygiene = hygiene_import.BatchScreen(job)

    def apply(self, batch):
        problems = []
        if self.job.mode in (ImportJob.ADD, ImportJob.UPSERT):
            batch = self.hygiene.screen(batch, problems)  # before duplicates, as importing_pg
        rows = [row for row in batch if not self._duplicate(row, problems)]
        mode = self.job.mode
        if mode in (ImportJob.ADD, ImportJob.UPSERT):
            self._subscribe(self._refuse(rows, problems), problems)
        elif mode == ImportJob.UNSUBSCRIBE:
            self._unsubscribe(rows, problems)
        else:
            self._suppress(self._refuse_erased(rows, problems), problems)
        self.totals[2] += len(problems)
        return problems

    def _duplicate(self, row, problems):
        first = self.seen.setdefault(row[1].lower(), row[0])
        if first != row[0]:
            problems.append((row[0], row[1], f"duplicate of line {first}"))
            return True
        return False

    # --- add / upsert ------------------------------------------------------------------

    def _refuse(self, rows, problems):
        """Drop suppressed, erased and blocklisted addresses, in the order importing_pg checks them."""
        keys = [row[1].lower() for row in rows]
        suppressed = set(Suppression.objects.filter(email__in=keys).values_list("email", flat=True))
        rows = _keep(rows, lambda row: row[1].lower() not in suppressed, "on the suppression list", problems)
        rows = self._refuse_erased(rows, problems)
        self.existing = _subscribers([row[1].lower() for row in rows])
        blocked = {k for k, s in self.existing.items() if s.status == Subscriber.BLOCKLISTED}
        return _keep(rows, lambda row: row[1].lower() not in blocked, "blocklisted", problems)

    def _refuse_erased(self, rows, problems):
        if not self.digests:
            return rows
        hashes = {row[0]: erased_digest(row[1]) for row in rows}
        erased = set(ErasedAddress.objects.filter(digest__in=hashes.values()).values_list("digest", flat=True))
        return _keep(rows, lambda row: hashes[row[0]] not in erased, "erased on request", problems)

    def _subscribe(self, rows, problems):
        memberships = {
            m.subscriber_id: m for m in Subscription.objects.filter(
                mailing_list_id=self.job.mailing_list_id, subscriber__in=list(self.existing.values())
            )
        }
        if self.job.mode == ImportJob.ADD:
            on_list = {k for k, s in self.existing.items() if s.pk in memberships}
            rows = _keep(rows, lambda row: row[1].lower() not in on_list, "already on the list", problems)
        subscribers = self._write_subscribers(rows)
        created = self._write_subscriptions(subscribers, memberships)
        self._tag(subscribers)
        self.totals[0] += created
        self.totals[1] += len(rows) - created

    def _write_subscribers(self, rows):
        new, changed, subscribers = [], [], []
        for line, email, name, time_zone, values in rows:
            attributes = self.reader.attributes(values)
            subscriber = self.existing.get(email.lower())
            if subscriber is None:
                subscriber = Subscriber(email=email, name=name, time_zone=time_zone, attributes=attributes)
                new.append(subscriber)
            elif self.job.mode == ImportJob.UPSERT and _merge(subscriber, name, time_zone, attributes):
                changed.append(subscriber)
            subscribers.append(subscriber)
        Subscriber.objects.bulk_create(new)
        Subscriber.objects.bulk_update(changed, ["name", "time_zone", "attributes", "updated_at"])
        importing_events.announce_created(new)
        return subscribers

    def _write_subscriptions(self, subscribers, memberships):
        now = timezone.now()
        status = Subscription.CONFIRMED if self.job.confirmed else Subscription.UNCONFIRMED
        fields = {"status": status, "source": Subscription.IMPORT, "consent_at": now,
                  "consent_form": self.details.consent_form, "consent_text": self.details.consent_text,
                  "confirmed_at": now if self.job.confirmed else None, "updated_at": now}
        new, renewed = [], []
        for subscriber in subscribers:
            membership = memberships.get(subscriber.pk)
            if membership is None:
                new.append(Subscription(subscriber=subscriber, mailing_list_id=self.job.mailing_list_id, **fields))
            elif membership.status == Subscription.UNCONFIRMED:  # renewed, as importing_pg's upsert does
                for field, value in fields.items():
                    setattr(membership, field, value)
                renewed.append(membership)
        Subscription.objects.bulk_create(new)
        Subscription.objects.bulk_update(renewed, list(fields))
        if self.job.confirmed:
            importing_events.announce_subscriptions(events.SUBSCRIPTION_CONFIRMED, [s.pk for s in new + renewed])
        return len(new)

    def _tag(self, subscribers):
        through = Subscriber.tags.through
        links = [through(subscriber_id=s.pk, tag_id=t) for s in subscribers for t in self.details.tag_ids]
        through.objects.bulk_create(links, ignore_conflicts=True)

    # --- unsubscribe / suppress ------------------------------------------------------------

    def _unsubscribe(self, rows, problems):
        existing = _subscribers([row[1].lower() for row in rows])
        memberships = Subscription.objects.filter(subscriber__in=list(existing.values()))
        if self.job.mailing_list_id:
            memberships = memberships.filter(mailing_list_id=self.job.mailing_list_id)
        by_subscriber = {}
        for membership in memberships:
            by_subscriber.setdefault(membership.subscriber_id, []).append(membership)
        changing = []
        for line, email, *_ in rows:
            subscriber = existing.get(email.lower())
            found = by_subscriber.get(subscriber.pk, []) if subscriber else []
            pending = [m.pk for m in found if m.status != Subscription.UNSUBSCRIBED]
            if pending:
                changing.extend(pending)
                self.totals[1] += 1
            else:
                problems.append((line, email, _not_unsubscribed_reason(subscriber, found, self.job)))
        now = timezone.now()
        Subscription.objects.filter(pk__in=changing).update(
            status=Subscription.UNSUBSCRIBED, unsubscribed_at=now, unsubscribe_reason=self.details.unsubscribe_reason,
            unsubscribe_ip=None, updated_at=now,
        )
        importing_events.announce_subscriptions(events.SUBSCRIPTION_UNSUBSCRIBED, changing)

    def _suppress(self, rows, problems):
        keys = [row[1].lower() for row in rows]
        known = set(Suppression.objects.filter(email__in=keys).values_list("email", flat=True))
        rows = _keep(rows, lambda row: row[1].lower() not in known, "already suppressed", problems)
        Suppression.objects.bulk_create(
            [Suppression(email=row[1].lower(), reason=Suppression.IMPORT, detail=self.details.suppression_detail)
             for row in rows]
        )
        self.totals[0] += len(rows)


def _keep(rows, test, reason, problems):
    """The rows passing `test`; the others go to `problems` with `reason`."""
    kept = []
    for row in rows:
        if test(row):
            kept.append(row)
        else:
            problems.append((row[0], row[1], reason))
    return kept


def _subscribers(keys):
    """{lower-cased address: Subscriber} for the addresses that exist."""
    found = Subscriber.objects.alias(email_lower=Lower("email")).filter(email_lower__in=keys)
    return {s.email.lower(): s for s in found}


def _merge(subscriber, name, time_zone, attributes):
    """Filled cells overwrite, empty ones keep what is stored, attributes merge; returns whether it changed."""
    before = (subscriber.name, subscriber.time_zone, subscriber.attributes)
    subscriber.name = name or subscriber.name
    subscriber.time_zone = time_zone or subscriber.time_zone
    subscriber.attributes = {**subscriber.attributes, **attributes}
    subscriber.updated_at = timezone.now()  # bulk_update does not touch auto_now fields
    return (subscriber.name, subscriber.time_zone, subscriber.attributes) != before


def _not_unsubscribed_reason(subscriber, memberships, job):
    if subscriber is None:
        return "not a subscriber"
    if memberships:
        return "already unsubscribed"
    return "not on this list" if job.mailing_list_id else "not on any list"
