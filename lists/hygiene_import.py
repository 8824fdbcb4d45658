"""
The hygiene flags of lists.hygiene, applied to many addresses at once: a CSV
import (both engines) and the re-check of existing subscribers
(`manage.py flag_subscribers`, the admin action).

An import (add or upsert) classifies every valid row before the merge. The
domains are classified once each, in Python (the throwaway list, and the MX
check when the job asks for it); the rows are then matched in one statement.
With `job.skip_flagged` the flagged rows are skipped, each with its reason in
the problem report; otherwise they are imported. Either way, after the merge,
every flagged address of the file that is a subscriber gets its flags (one
UPDATE over the flagged rows only, usually a few per cent), and subscribers at
a domain the MX check found mail servers for lose a stale "no MX" flag.
`job.flagged` counts the flagged addresses of the file.

Both engines follow these rules; tests/test_hygiene.py runs both on one file.
"""

from dataclasses import dataclass, field
from itertools import islice

from django.db import transaction
from django.db.models.functions import Lower

from . import hygiene
from .models import ImportJob, Subscriber

# The SQL twins of hygiene.split() and hygiene.role_key(), over a lower-cased address {0} (Postgres 14+:
# split_part with -1 is the last field). The local part is cut at the first @, hygiene.split() at the
# last: they differ only for a quoted local part holding an @, which starts with a quote and so is never
# a role in either. replace() three times costs 0.7 s less than one translate() per 1,000,000 rows.
DOMAIN_SQL = "split_part({0}, '@', -1)"
ROLE_KEY_SQL = "replace(replace(replace(split_part(split_part({0}, '@', 1), '+', 1), '.', ''), '-', ''), '_', '')"

S = Subscriber._meta.db_table

REASONS = {
    hygiene.DISPOSABLE: "throwaway mail domain",
    hygiene.NO_MX: "no mail server for the domain",
    hygiene.ROLE: "role address",
}


def skip_reason(flags):
    """The problem report's reason for a skipped row (the most telling flag)."""
    for name in (hygiene.DISPOSABLE, hygiene.NO_MX, hygiene.ROLE):
        if getattr(flags, name):
            return REASONS[name]
    return ""


@dataclass
class Screening:
    """What screen() found, for mark()."""

    checked_mx: bool
    skipped: int = 0
    flagged: int = 0
    mail_domains: list = field(default_factory=list)  # domains the MX check found mail servers for


def _classify_domains(domains, check_mx):
    """(throwaway domains, domains without mail servers, domains with them) among `domains`."""
    disposable = [d for d in domains if hygiene.is_disposable_domain(d)]
    statuses = hygiene.check_domains(domains) if check_mx else {}
    no_mx = [d for d, s in statuses.items() if s == hygiene.MX_NONE]
    return disposable, no_mx, [d for d, s in statuses.items() if s == hygiene.MX_OK]


# --- The Postgres import (lists.importing_pg) ------------------------------------------------------


def screen(cursor, job):
    """Before the merge: find the staged rows' flags (import_flag), skip them if the job says so.

    Runs inside the merge's transaction, before it touches any shared table: the MX look-ups
    (bounded by HYGIENE_MX_SECONDS) hold no lock. Returns a Screening.
    """
    cursor.execute("DROP TABLE IF EXISTS import_flag")
    cursor.execute(f"SELECT DISTINCT {DOMAIN_SQL.format('key')} FROM import_row")
    domains = [row[0] for row in cursor.fetchall()]
    disposable, no_mx, mail_domains = _classify_domains(domains, job.check_mx)
    # Measured on 1,000,000 staged rows with 20,000 domains (2 cores at load 10, so a quiet machine takes
    # about a third): 2.4 s for the domains above, 0.1 s to classify them, 2.7 s for this: 5 % of the
    # ~100 s such an import takes at that load (BENCHMARKS.md). Without the MX check no DNS is asked.
    cursor.execute(
        "CREATE TEMP TABLE import_flag AS SELECT line, key, role, disposable, no_mx FROM"
        f" (SELECT line, key, {ROLE_KEY_SQL.format('key')} = ANY(%s) AS role,"
        f" {DOMAIN_SQL.format('key')} = ANY(%s) AS disposable, {DOMAIN_SQL.format('key')} = ANY(%s) AS no_mx"
        " FROM import_row) f WHERE role OR disposable OR no_mx",
        [sorted(hygiene.ROLE_LOCAL_PARTS), disposable, no_mx],
    )
    screening = Screening(checked_mx=job.check_mx, mail_domains=mail_domains)
    cursor.execute("SELECT count(DISTINCT key) FROM import_flag")
    screening.flagged = job.flagged = cursor.fetchone()[0]
    ImportJob.objects.filter(pk=job.pk).update(flagged=job.flagged)
    if job.skip_flagged and screening.flagged:
        cursor.execute(
            "WITH gone AS (DELETE FROM import_row r USING import_flag f WHERE r.line = f.line"
            " RETURNING r.line, r.email, f.role, f.disposable, f.no_mx)"
            " INSERT INTO import_problem (line, email, reason) SELECT line, email,"
            " CASE WHEN disposable THEN %s WHEN no_mx THEN %s ELSE %s END FROM gone",
            [REASONS[hygiene.DISPOSABLE], REASONS[hygiene.NO_MX], REASONS[hygiene.ROLE]],
        )
        screening.skipped = cursor.rowcount
    return screening


def mark(cursor, screening):
    """After the merge: the flagged addresses' subscribers get their flags; stale "no MX" flags go."""
    if screening.flagged:
        # The lower(email) unique index finds each flagged address's subscriber; unflagged rows are not read.
        cursor.execute(
            f"UPDATE {S} s SET is_role_address = f.role, is_disposable_address = f.disposable,"
            " has_no_mx = CASE WHEN %s THEN f.no_mx ELSE s.has_no_mx END"
            " FROM (SELECT DISTINCT ON (key) key, role, disposable, no_mx FROM import_flag) f"
            " WHERE lower(s.email) = f.key AND (s.is_role_address, s.is_disposable_address, s.has_no_mx)"
            " IS DISTINCT FROM (f.role, f.disposable, CASE WHEN %s THEN f.no_mx ELSE s.has_no_mx END)",
            [screening.checked_mx, screening.checked_mx],
        )
    cursor.execute("DROP TABLE IF EXISTS import_flag")
    clear_no_mx(screening.mail_domains)


def clear_no_mx(mail_domains):
    """Subscribers at these domains (which have mail servers now) lose their "no MX" flag.

    Reads only the flagged subscribers (the subscriber_no_mx partial index), so it costs nothing
    when, as usual, there are none.
    """
    if not mail_domains:
        return 0
    wanted = set(mail_domains)
    stale = [pk for pk, email in Subscriber.objects.filter(has_no_mx=True).values_list("pk", "email").iterator()
             if hygiene.split(email)[1] in wanted]
    return Subscriber.objects.filter(pk__in=stale).update(has_no_mx=False)


# --- The portable import (lists.importing_orm) -------------------------------------------------------


class BatchScreen:
    """The same rules for the portable import, batch by batch; mark() once the last batch is in."""

    def __init__(self, job):
        self.job = job
        self.flags = {}  # lower-cased address -> Flags, for the flagged ones of the whole file
        self.mail_domains = set()

    def screen(self, rows, problems):
        """The rows to import; skipped ones go to `problems` as (line, email, reason)."""
        domains = sorted({hygiene.split(row[1])[1] for row in rows})
        disposable, no_mx, mail_domains = _classify_domains(domains, self.job.check_mx)
        disposable, no_mx = set(disposable), set(no_mx)
        self.mail_domains.update(mail_domains)
        kept = []
        for row in rows:
            key = row[1].lower()
            local, domain = hygiene.split(key)
            flags = hygiene.Flags(role=hygiene.role_key(local) in hygiene.ROLE_LOCAL_PARTS,
                                  disposable=domain in disposable, no_mx=domain in no_mx)
            if flags:
                self.flags.setdefault(key, flags)
                if self.job.skip_flagged:
                    problems.append((row[0], row[1], skip_reason(flags)))
                    continue
            kept.append(row)
        return kept

    def mark(self):
        """Flags onto the subscribers, as mark() does on Postgres; saves job.flagged."""
        by_flags = {}
        for key, flags in self.flags.items():
            by_flags.setdefault(flags, []).append(key)
        for flags, keys in by_flags.items():
            values = flags.fields()
            if not self.job.check_mx:
                values.pop(hygiene.FIELDS[hygiene.NO_MX])
            for chunk in _chunks(keys, 500):
                found = Subscriber.objects.alias(key=Lower("email")).filter(key__in=chunk)
                found.exclude(**values).update(**values)
        clear_no_mx(sorted(self.mail_domains))
        self.job.flagged = len(self.flags)
        ImportJob.objects.filter(pk=self.job.pk).update(flagged=self.job.flagged)


def _chunks(items, size):
    items = iter(items)
    while chunk := list(islice(items, size)):
        yield chunk


# --- Existing subscribers ------------------------------------------------------------------------------


def reflag(subscribers, *, check_mx=False, chunk=5000):
    """Classify `subscribers` (a QuerySet) again, e.g. after the throwaway list changed or for the
    subscribers stored before these flags existed; returns how many changed.

    `check_mx` also looks their domains up (cached; see hygiene.check_domains); without it the
    "no MX" flags stay as they are. Chunk by chunk in id order, each chunk one transaction.
    """
    changed, after = 0, 0
    ordered = subscribers.order_by("pk")
    while rows := list(ordered.filter(pk__gt=after).values_list("pk", "email", "is_role_address",
                                                                 "is_disposable_address", "has_no_mx")[:chunk]):
        after = rows[-1][0]
        domains = sorted({hygiene.split(email)[1] for _, email, *_ in rows})
        statuses = hygiene.check_domains(domains) if check_mx else {}
        with transaction.atomic():
            changed += _reflag_rows(rows, statuses, check_mx)
    return changed


def _reflag_rows(rows, statuses, check_mx):
    groups = {}
    for pk, email, *before in rows:
        local, domain = hygiene.split(email)
        status = statuses.get(domain, hygiene.MX_UNKNOWN)
        # Without the check, or when the DNS did not answer, "no MX" stays as it was known.
        no_mx = before[2] if not check_mx or status == hygiene.MX_UNKNOWN else status == hygiene.MX_NONE
        now = (hygiene.role_key(local) in hygiene.ROLE_LOCAL_PARTS, hygiene.is_disposable_domain(domain), no_mx)
        if now != tuple(before):
            groups.setdefault(now, []).append(pk)
    for (role, disposable, no_mx), pks in groups.items():
        Subscriber.objects.filter(pk__in=pks).update(
            is_role_address=role, is_disposable_address=disposable, has_no_mx=no_mx)
    return sum(len(pks) for pks in groups.values())
