"""manage.py flag_subscribers [--list ID] [--check-mx]"""

from django.core.management.base import BaseCommand, CommandError

from lists import hygiene_import
from lists.models import MailingList, Subscriber


class Command(BaseCommand):
    help = ("Set the list-hygiene flags (role address, throwaway domain and, with --check-mx, no mail server) of "
            "existing subscribers: after an upgrade, or after lists/data/disposable_domains.txt changed. "
            "Signups and imports set them as they go.")

    def add_arguments(self, parser):
        parser.add_argument("--list", type=int, dest="list_id", help="only the members of this list")
        parser.add_argument("--check-mx", action="store_true",
                            help="also look up each domain's mail servers (answers are kept for a day)")

    def handle(self, *args, list_id=None, check_mx=False, **options):
        subscribers = Subscriber.objects.all()
        if list_id is not None:
            mailing_list = MailingList.objects.filter(pk=list_id).first()
            if mailing_list is None:
                raise CommandError(f"There is no list with id {list_id}.")
            subscribers = subscribers.filter(subscriptions__mailing_list=mailing_list)
        changed = hygiene_import.reflag(subscribers, check_mx=check_mx)
        self.stdout.write(f"Flags changed on {changed} subscriber(s).")
