"""
`manage.py send_broadcast ID [--start]`: run the pipeline for one broadcast in the
foreground, with a progress line, until every message has an outcome.

Useful on a machine without Celery workers, and to watch a send. Workers may run
at the same time: claims are exclusive, so they simply share the work. Ctrl-C
stops after the batch in hand; nothing is lost, and it can be run again.
"""

import signal
import time

from django.core.management import BaseCommand, CommandError
from django.utils import timezone

from campaigns import broadcasts, ledger, sending
from campaigns.models import Broadcast


class Command(BaseCommand):
    help = "Send one broadcast in the foreground with a progress line."

    def add_arguments(self, parser):
        parser.add_argument("broadcast_id", type=int)
        parser.add_argument("--start", action="store_true", help="Start it first if it is a draft or scheduled.")

    def handle(self, *args, broadcast_id, start, **options):
        broadcast = Broadcast.objects.filter(pk=broadcast_id).first()
        if broadcast is None:
            raise CommandError(f"There is no broadcast {broadcast_id}.")
        if start and broadcast.status in (Broadcast.DRAFT, Broadcast.SCHEDULED):
            try:
                broadcasts.send_now(broadcast)
            except broadcasts.BroadcastError as exc:
                raise CommandError(str(exc)) from exc
        if broadcast.status != Broadcast.SENDING and not Broadcast.objects.filter(
            pk=broadcast_id, status=Broadcast.SENDING
        ).exists():
            raise CommandError(
                f"Broadcast {broadcast_id} is {broadcast.get_status_display().lower()}, not sending. "
                "Use --start to send a draft now, or resume it first."
            )
        written = broadcasts.write_ledger(broadcast_id)
        if written:
            self.stdout.write(f"Wrote {written} ledger rows.")
        self._run(broadcast_id)

    def _run(self, broadcast_id):
        stopping = []
        signal.signal(signal.SIGINT, lambda *a: stopping.append(True))
        started, start_sent = time.monotonic(), None
        while not stopping:
            ledger.reap()
            result = sending.send_batch(broadcast_id)
            progress = broadcasts.progress(Broadcast.objects.get(pk=broadcast_id))
            start_sent = progress["sent"] if start_sent is None else start_sent
            rate = (progress["sent"] - start_sent) / max(0.001, time.monotonic() - started)
            self._line(progress, rate)
            if result.claimed:
                continue
            if ledger.finish_if_done(broadcast_id) or progress["status"] != Broadcast.SENDING:
                break
            due = ledger.next_due(broadcast_id)
            wait = 5 if due is None else min(5, max(0.2, (due - timezone.now()).total_seconds()))
            time.sleep(wait)
        self._line(broadcasts.progress(Broadcast.objects.get(pk=broadcast_id)), None, final=True)

    def _line(self, p, rate, final=False):
        speed = f" · {rate:,.0f} msg/s" if rate else ""
        line = (f"\r{p['status_label']}: {p['percent']:3d}% · sent {p['sent']:,} of {p['recipients']:,} · "
                f"failed {p['failed']:,} · skipped {p['skipped']:,} · unknown {p['unknown']:,} · "
                f"pending {p['pending']:,}{speed}   ")
        self.stdout.write(line, ending="\n" if final else "")
        if final and p["pause_reason"]:
            self.stdout.write(f"Paused: {p['pause_reason']}")
        self.stdout.flush()
