"""manage.py import_subscribers FILE --list ID --mode add|upsert|unsubscribe|suppress [--confirmed] [--map COL=FIELD] [--tag T]"""

import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from lists import importing
from lists.importing_csv import CSVFileError, auto_mapping, parse_map_options, sniff, validate_mapping
from lists.management.progress import ProgressBar
from lists.models import ImportJob, MailingList
from lists.validation import InvalidSubscriber


class Command(BaseCommand):
    help = (
        "Import subscribers from a CSV file whose first row names the columns. Columns called email, name "
        "(or first/last name) and time zone are recognised; the others become attributes. See lists/importing.py."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the CSV file (comma, semicolon or tab separated; UTF-8 or Latin-1)")
        parser.add_argument("--list", type=int, dest="list_id", help="id of the list (required for add and upsert)")
        parser.add_argument("--mode", choices=[m for m, _ in ImportJob.MODE_CHOICES], default=ImportJob.ADD,
                            help="add: new only; upsert: add and update; unsubscribe; suppress (default: add)")
        parser.add_argument("--confirmed", action="store_true",
                            help="you vouch that these people agreed: subscribe them at once, send no confirmation mail")
        parser.add_argument("--map", action="append", default=[], metavar="COLUMN=FIELD",
                            help="map a column to email, name, time_zone, attributes.<key>, or nothing (COLUMN=)")
        parser.add_argument("--tag", action="append", default=[], help="tag every imported subscriber (repeatable)")
        parser.add_argument("--check-mx", action="store_true",
                            help="look up each domain's mail servers and flag addresses at domains without any")
        parser.add_argument("--skip-flagged", action="store_true",
                            help="skip role addresses, throwaway domains and (with --check-mx) domains without "
                                 "mail servers instead of importing them with a flag")

    def handle(self, *args, **options):
        path = Path(options["file"]).resolve()
        if not path.is_file():
            raise CommandError(f"No file at {path}.")
        job = self._job(path, options)
        bar = ProgressBar(self.stdout, job.total_bytes)
        started = time.monotonic()
        try:
            importing.run_import(job, progress=lambda job: bar.show(job.processed_bytes, count=job.rows))
        finally:
            bar.finish()
        if job.status == ImportJob.FAILED:
            raise CommandError(job.failure)
        self._summary(job, time.monotonic() - started)

    def _job(self, path, options):
        mode, list_id = options["mode"], options["list_id"]
        mailing_list = MailingList.objects.filter(pk=list_id).first() if list_id else None
        if list_id and mailing_list is None:
            raise CommandError(f"There is no list with id {list_id}.")
        if mailing_list is None and mode in (ImportJob.ADD, ImportJob.UPSERT):
            raise CommandError("Name the list to import into with --list ID.")
        try:
            sniffed = sniff(path)
            mapping = {**auto_mapping(sniffed.header), **parse_map_options(options["map"])}
            tags = importing.clean_tags(options["tag"])
        except (CSVFileError, InvalidSubscriber) as exc:
            raise CommandError(str(exc))
        problems = validate_mapping(sniffed.header, mapping)
        if problems:
            raise CommandError(" ".join(problems))
        if sniffed.warning:
            self.stderr.write(sniffed.warning)
        self._describe(path, mailing_list, mode, options["confirmed"], mapping)
        return ImportJob.objects.create(
            mailing_list=mailing_list, file=str(path), original_name=path.name[:255], mode=mode,
            confirmed=options["confirmed"], mapping=mapping, tags=tags, total_bytes=path.stat().st_size,
            check_mx=options["check_mx"], skip_flagged=options["skip_flagged"],
        )

    def _describe(self, path, mailing_list, mode, confirmed, mapping):
        where = f" into “{mailing_list.name}”" if mailing_list else ""
        how = dict(ImportJob.MODE_CHOICES)[mode].lower()
        if mode in (ImportJob.ADD, ImportJob.UPSERT):
            how += "; new subscriptions are confirmed at once" if confirmed else "; new subscriptions wait for confirmation"
        self.stdout.write(f"Importing {path.name}{where} ({how}).")
        used = [f"{column} → {target}" for column, target in mapping.items() if target]
        ignored = [column for column, target in mapping.items() if not target]
        self.stdout.write("Columns: " + ", ".join(used) + (f"; ignored: {', '.join(ignored)}" if ignored else ""))

    def _summary(self, job, seconds):
        self.stdout.write(
            f"Done in {seconds:.1f} s: {job.rows:,} rows, {job.created:,} created, {job.updated:,} updated, "
            f"{job.skipped:,} skipped, {job.invalid:,} invalid."
        )
        if job.flagged:
            what = "skipped" if job.skip_flagged else "flagged (see the Subscribers page's Flag filter)"
            self.stdout.write(f"{job.flagged:,} role, throwaway or mail-less address(es) {what}.")
        if job.error_report:
            self.stdout.write(f"Skipped and invalid rows, with line numbers: {importing.report_path(job)}")
        if importing.needs_confirmations(job):
            self.stdout.write("Confirmation mails to the new subscribers are queued; the worker sends them.")
