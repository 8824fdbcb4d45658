"""manage.py export_subscribers [--list ID] [--query Q] [--status S] [--segment ID] [--output FILE]"""

import sys

from django.core.management.base import BaseCommand, CommandError

from lists import exporting
from lists.models import MailingList, Segment
from lists.search import search_subscribers


class Command(BaseCommand):
    help = ("Export subscribers as CSV (formula-safe, as the dashboard's export): a list's members with their "
            "subscription status, or the subscribers a search finds. Writes to standard output or --output.")

    def add_arguments(self, parser):
        parser.add_argument("--list", type=int, dest="list_id", help="a list's members (ignores the search options)")
        parser.add_argument("--query", default="", help='search words; key:value matches an attribute')
        parser.add_argument("--status", help="active or blocklisted, or a subscription status on any list")
        parser.add_argument("--segment", type=int, help="id of a segment the subscribers must match")
        parser.add_argument("--output", help="file to write (default: standard output)")

    def handle(self, *args, list_id=None, query="", status=None, segment=None, output=None, **options):
        rows = self._rows(list_id, query, status, segment)
        out = open(output, "w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            for line in exporting.csv_lines(rows):
                out.write(line)
        finally:
            if output:
                out.close()

    def _rows(self, list_id, query, status, segment_id):
        if list_id is not None:
            mailing_list = MailingList.objects.filter(pk=list_id).first()
            if mailing_list is None:
                raise CommandError(f"There is no list with id {list_id}.")
            return exporting.subscription_rows(mailing_list)
        segment = Segment.objects.filter(pk=segment_id).first() if segment_id is not None else None
        if segment_id is not None and segment is None:
            raise CommandError(f"There is no segment with id {segment_id}.")
        try:
            return exporting.subscriber_rows(search_subscribers(query, status=status, segment=segment))
        except ValueError as exc:
            raise CommandError(str(exc))
