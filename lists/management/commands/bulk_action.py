"""manage.py bulk_action tag|untag|unsubscribe|delete [--list ID] [--status S] [--query Q] [--has-tag NAME]
[--segment ID] [--flag F] [--all] [--tag NAME] [--from-list ID] [--reason TEXT] [--dry-run] [--yes]"""

import sys
import time

from django.core.management.base import BaseCommand, CommandError

from lists import bulk_actions, hygiene
from lists.management.progress import ProgressBar
from lists.models import MailingList, Segment, Subscription, Tag
from lists.segments import SegmentError
from lists.validation import InvalidSubscriber, clean_tag


class Command(BaseCommand):
    help = (
        "Tag, untag, unsubscribe or delete the subscribers a filter, a segment or a list names, as the "
        "dashboard's bulk actions do (lists/bulk_actions.py), in chunks with a progress bar. The selection "
        "options combine; --all names every subscriber. --dry-run shows how many without changing anything."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=bulk_actions.ACTIONS)
        who = parser.add_argument_group("which subscribers (the options combine, as the subscriber page's filters)")
        who.add_argument("--list", type=int, dest="list_id", help="members of this list (id)")
        who.add_argument("--status", choices=[s for s, _ in Subscription.STATUS_CHOICES],
                         help="their subscription status: on --list, else on any list")
        who.add_argument("--query", default="", help="search words; key:value matches an attribute")
        who.add_argument("--has-tag", metavar="NAME", help="subscribers with this tag")
        who.add_argument("--segment", type=int, dest="segment_id", help="subscribers matching this segment (id)")
        who.add_argument("--flag", choices=[f for f, _ in hygiene.FILTER_CHOICES], help="a list hygiene flag")
        who.add_argument("--all", action="store_true", dest="everyone", help="every subscriber (no other option)")
        what = parser.add_argument_group("what to do")
        what.add_argument("--tag", metavar="NAME", default="", help="the tag to add or take off (tag, untag)")
        what.add_argument("--from-list", type=int, help="unsubscribe from this list only (default: every list)")
        what.add_argument("--reason", default="By manage.py bulk_action", help="recorded with each unsubscribe")
        parser.add_argument("--dry-run", action="store_true", help="show how many and what; change nothing")
        parser.add_argument("--yes", action="store_true", help="do not ask before changing anything")

    def handle(self, *args, action, **options):
        from_list = self._list(options["from_list"]) if options["from_list"] else None
        options["tag"] = self._tag_name(action, options["tag"])
        try:  # a segment whose list or tag is gone, a search that does not parse
            subscribers = self._subscribers(options)
            count = subscribers.count()
        except (SegmentError, ValueError) as exc:
            raise CommandError(f"This selection cannot be used: {exc}")
        self.stdout.write(bulk_actions.describe(action, count, tag_name=options["tag"], from_list=from_list) + ".")
        if options["dry_run"] or count == 0:
            self.stdout.write("Dry run: nothing was changed." if options["dry_run"]
                              else "No subscriber matches, so nothing was changed.")
            return
        self._confirm(action, count, options["yes"])
        self._run(action, subscribers, count, tag_name=options["tag"], mailing_list=from_list,
                  reason=options["reason"])

    # --- The selection -----------------------------------------------------------------------------

    def _subscribers(self, options):
        filters = {"list": options["list_id"], "status": options["status"], "q": options["query"].strip(),
                   "tag": (options["has_tag"] or "").strip(), "segment": options["segment_id"],
                   "flag": options["flag"]}
        chosen = {name: value for name, value in filters.items() if value}
        if chosen and options["everyone"]:
            raise CommandError("--all means every subscriber; leave it out to use the other options.")
        if not chosen and not options["everyone"]:
            raise CommandError("Say which subscribers: --list, --status, --query, --has-tag, --segment or --flag, "
                               "or --all for every one of them.")
        if options["list_id"]:
            self._list(options["list_id"])
        if chosen.get("tag") and not Tag.objects.filter(name=chosen["tag"]).exists():
            raise CommandError(f"There is no tag named “{chosen['tag']}”.")
        if options["segment_id"] and not Segment.objects.filter(pk=options["segment_id"]).exists():
            raise CommandError(f"There is no segment with id {options['segment_id']}.")
        return bulk_actions.subscribers_for({"filters": chosen})

    def _tag_name(self, action, name):
        if action not in ("tag", "untag"):
            return ""
        if not name.strip():
            raise CommandError(f"Name the tag to {'add' if action == 'tag' else 'take off'} with --tag NAME.")
        try:
            name = clean_tag(name)
        except InvalidSubscriber as exc:
            raise CommandError(exc.message)
        if action == "untag" and not Tag.objects.filter(name=name).exists():
            raise CommandError(f"There is no tag named “{name}”, so no subscriber has it.")
        return name

    def _list(self, list_id):
        mailing_list = MailingList.objects.filter(pk=list_id).first()
        if mailing_list is None:
            raise CommandError(f"There is no list with id {list_id}.")
        return mailing_list

    # --- Asking, then doing ------------------------------------------------------------------------

    def _confirm(self, action, count, yes):
        """As the dashboard: a question first; deleting asks for the number to be typed."""
        if yes:
            return
        if not sys.stdin.isatty():
            raise CommandError("Nothing was changed: add --yes to run it without a question, "
                               "or --dry-run to see the count only.")
        if action == "delete":
            answer = input(f"Type the number of subscribers ({count}) to delete them: ").strip()
            agreed = answer.replace(",", "") == str(count)
        else:
            agreed = input("Go ahead? [y/N] ").strip().lower() in ("y", "yes")
        if not agreed:
            raise CommandError("Nothing was changed.")

    def _run(self, action, subscribers, count, **options):
        bar = ProgressBar(self.stdout, count, unit="subscribers")
        started = time.monotonic()
        try:
            changed = bulk_actions.apply_in_chunks(action, subscribers, on_chunk=lambda seen, _: bar.show(seen),
                                                   **options)
        finally:
            bar.finish()
        done = bulk_actions.DONE[action].format(n=changed, tag=options["tag_name"])
        self.stdout.write(f"Done in {time.monotonic() - started:.1f} s. {done}")
