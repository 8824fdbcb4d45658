"""
`manage.py read_bounces [--url URL] [--limit N]`: read the bounce mailbox once, in
the foreground, and say what was done — to check BOUNCE_MAILBOX_URL when setting
it up, or to catch up without the beat. Safe to run while the beat task runs:
handling is idempotent.
"""

import imaplib
import poplib

from django.conf import settings
from django.core.management import BaseCommand, CommandError

from campaigns import inbound


class Command(BaseCommand):
    help = "Read the bounce mailbox once: bounces, complaints and mailto unsubscribes."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="", help="A mailbox URL instead of BOUNCE_MAILBOX_URL.")
        parser.add_argument("--limit", type=int, default=500, help="At most this many mails (default 500).")

    def handle(self, *args, url, limit, **options):
        url = url or settings.BOUNCE_MAILBOX_URL
        if not url:
            raise CommandError("No mailbox: set BOUNCE_MAILBOX_URL (e.g. imaps://user:password@host:993/INBOX) "
                               "or pass --url.")
        try:
            result = inbound.read_mailbox(url, limit=limit)
        except (OSError, imaplib.IMAP4.error, poplib.error_proto, ValueError) as exc:
            raise CommandError(f"Could not read the mailbox: {exc}") from exc
        for action in result.actions:
            self.stdout.write(f"  {action}")
        self.stdout.write(
            f"Read {result.read} mail(s): {result.understood} handled and removed, "
            f"{result.kept} left in the mailbox for a person to read."
        )
