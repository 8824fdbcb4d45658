"""
`manage.py drain_events`: move the buffered opens and clicks into Postgres now,
with a count — what the beat task does every TRACKING_DRAIN_SECONDS. For a
machine without beat, or to see that the buffer empties.
"""

from django.core.management import BaseCommand

from campaigns import events


class Command(BaseCommand):
    help = "Store the opens and clicks waiting in the Redis buffer."

    def handle(self, *args, **options):
        if not events.buffered():
            self.stdout.write("No buffer (TRACKING_BUFFER=direct or no REDIS_URL): every hit is stored at once.")
            return
        waiting = events.pending()
        stored = events.drain(seconds=600)
        self.stdout.write(f"{waiting} waiting, {stored} stored; {events.pending()} still waiting.")
