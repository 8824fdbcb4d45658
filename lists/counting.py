"""
Counts of large sets for the dashboard, kept a minute: a segment's matches while it
is edited, a broadcast's recipients before it is sent (campaigns.broadcasts).

Counting such a set is a scan, not a lookup. Measured with EXPLAIN ANALYZE on the
data of bench/dashboard.py (1,000,000 subscribers; plus 20,000 suppressions and
2,000 blocklisted subscribers), Postgres 15 on the busy 2-core VM:

  recipients of a broadcast to a      1.5 s   parallel seq scan of the subscribers, hash
  list of 750,000 confirmed                   anti-join of lower(email) with the
                                              suppressions, parallel hash join with the
                                              list's confirmed subscriptions
  segment "attribute plan is pro"     0.5 s   bitmap heap scan of 333,000 rows (GIN index)
  segment "email contains gmail"      0.5 s   seq scan with ILIKE (session 3: the word index of
                                              lists/search.py serves word-prefix search, not
                                              "contains"; with trigram indexes it was 0.5 s too)
  segment "created in the last 30     40 ms   index-only scan of created_at
  days"

Tried for the recipients and left out: a covering index (list, status, subscriber)
on subscriptions, which the planner passes over for the seq scan (it reads 750,000 of
1,200,000 rows either way); and counting by difference (the list's confirmed
subscriptions, 55 ms by an index-only scan, minus those blocklisted or suppressed,
found by index probes from the suppression list): 1.2-1.6 s, as the planner joins
those few back with a seq scan of the subscriptions; it would grow with the
suppression list and be a second definition of "who gets a broadcast" to keep in step
with campaigns.ledger.audience. The largest single step is the anti-join on
lower(email), about 0.5 s of each worker's time.

So the pages render at once and load their count with htmx, and a count is kept
COUNT_SECONDS under a key made of what defines the set (a broadcast's lists and
segment conditions, a segment's conditions): editing the definition counts afresh,
and the composer, the send step and a reload share one count. What the key does not
see (people signing up, confirming or leaving meanwhile) shows after at most
COUNT_SECONDS; the pages say when they counted and can count again, and sending
counts for itself.
"""

import hashlib
import json

from django.core.cache import cache
from django.utils import timezone

from . import segments
from .models import Subscriber

COUNT_SECONDS = 60
EXAMPLES = 5
# The newest matches of a segment come from walking the primary key backwards until
# EXAMPLES match: instant when matches are common and spread out. When they are rare
# the walk reads most of the table (1.5 s at 1,000,000 rows for a segment of none:
# the planner expected 78,000), so below WALK_MIN matches the ids are fetched
# instead, which costs what the count cost, and for none nothing is asked. Matches
# that are common but all old still make a long walk; it is counted once a minute.
WALK_MIN = 2_000


def cached(kind, definition, compute, *, fresh=False):
    """compute() (a dict) kept COUNT_SECONDS under `kind` and a digest of `definition`
    (anything JSON can write), with "counted_at" added; `fresh` counts again."""
    text = json.dumps(definition, sort_keys=True, default=str)
    key = f"lists:count:{kind}:{hashlib.sha256(text.encode()).hexdigest()[:40]}"
    found = None if fresh else cache.get(key)
    if found is None:
        found = {**compute(), "counted_at": timezone.now()}
        cache.set(key, found, COUNT_SECONDS)
    return found


def segment_preview(conditions, match, *, fresh=False):
    """{"count", "examples" (newest first), "counted_at"} for conditions that validate."""
    def compute():
        found = segments.subscribers_matching(conditions, match)
        count = found.count()
        return {"count": count, "examples": newest_emails(found, count)}

    return cached("segment", [match, conditions], compute, fresh=fresh)


def newest_emails(subscribers, count, limit=EXAMPLES):
    """The addresses of the newest `limit` of `subscribers`, a set of `count` rows."""
    if count == 0:
        return []
    if count >= WALK_MIN:
        return list(subscribers.order_by("-pk").values_list("email", flat=True)[:limit])
    newest = sorted(subscribers.order_by().values_list("pk", flat=True), reverse=True)[:limit]
    return list(Subscriber.objects.filter(pk__in=newest).order_by("-pk").values_list("email", flat=True))
