"""
Subscriber search, shared by the dashboard, the REST API and exports.

A query is split into terms (quotes keep words together: `"ada lovelace"`).
A term `key:value` matches subscribers whose attribute `key` equals `value`
(JSONB containment, served by the jsonb_path_ops GIN index); any other term
matches a substring of the email address or the name (ILIKE, served by the
trigram GIN indexes). All terms must match.

Measured with EXPLAIN ANALYZE on the data of bench/import.py (942,572
subscribers on one list, Postgres 15, 2 busy shared cores), LIMIT 50 newest
first (ORDER BY created_at DESC, id DESC):

  ""                          0.1 ms  Index Scan Backward on created_at + Incremental Sort
  "gmail", "lovelace"         0.6 / 1.1 ms  the same walk, filtered: matches are frequent
  "ada lovelace"             10 ms    the same walk (6,152 matches)
  "plan:pro"                  0.1 ms  the same walk, attributes @> filter
  "country:DE plan:business"  0.3 ms
  a full address             24 ms    Bitmap Heap Scan on the email and name trigram
                                      indexes (BitmapOr), then a sort of the one row
  "zzqzz" (no match)          0.3 ms  the same bitmap scan, nothing to sort
  list + status confirmed     0.3 ms  the walk, nested loop on subscription_unique
  "knuth" + list + status     1.7 ms

The slow case: words that are each frequent but rare together ("grace hopper"
in the benchmark's data, where no Grace is a Hopper). Postgres multiplies the
words' selectivities, expects ~6,000 matches, walks the created_at index and
finds none: 1.1 s. Real name searches usually contain one selective word,
which the trigram statistics see, and get the bitmap plan.

The walk stays cheap after a bulk import because the import gives every row
its own created_at (clock_timestamp()); with equal timestamps Postgres would
sort the whole group to break ties on id.
"""

import shlex
from datetime import date, datetime, time

from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from . import hygiene
from .lookups import ATTRIBUTE_KEY, attribute_equals, text_contains
from .models import Subscriber, Subscription, Tag
from .segments import conditions_q

SUBSCRIBER_STATUSES = {Subscriber.ACTIVE, Subscriber.BLOCKLISTED}
SUBSCRIPTION_STATUSES = {s for s, _ in Subscription.STATUS_CHOICES}


def search_subscribers(query="", *, mailing_list=None, status=None, tag=None, segment=None,
                       created_after=None, created_before=None, flag=None):
    """Subscribers matching all the given filters, newest first (a lazy QuerySet).

    - `query`: terms as described in the module docstring; "" matches everyone.
    - `mailing_list`: only members of this list (any subscription status).
    - `status`: with a list, the subscription status on it (unconfirmed, confirmed,
      unsubscribed). Without a list, "active" or "blocklisted" filter the
      subscriber's own status, and a subscription status matches subscribers
      with such a subscription on any list. Anything else raises ValueError.
    - `tag`: a Tag, or a tag id.
    - `segment`: a Segment; its conditions are added to the same query.
    - `created_after` / `created_before`: datetimes or dates (a date means its
      start, in the current time zone), inclusive and exclusive.
    - `flag`: a hygiene flag (lists.hygiene: "role", "disposable", "no_mx") or
      "any" of them; served by the flags' partial indexes.
    """
    queryset = Subscriber.objects.filter(query_q(query)).order_by("-created_at", "-id")
    queryset = queryset.filter(_membership_q(mailing_list, status))
    if tag is not None:
        queryset = queryset.filter(tags=tag.pk if isinstance(tag, Tag) else tag)
    if segment is not None:
        queryset = queryset.filter(conditions_q(segment.conditions, segment.match))
    if created_after is not None:
        queryset = queryset.filter(created_at__gte=_moment(created_after))
    if created_before is not None:
        queryset = queryset.filter(created_at__lt=_moment(created_before))
    if flag is not None:
        queryset = queryset.filter(flag_q(flag))
    return queryset


def flag_q(flag):
    """Subscribers carrying a hygiene flag ("role", "disposable", "no_mx"), or "any" of them."""
    if flag == hygiene.ANY:
        return Q(**{hygiene.FIELDS[hygiene.ROLE]: True}) | Q(**{hygiene.FIELDS[hygiene.DISPOSABLE]: True}) | Q(
            **{hygiene.FIELDS[hygiene.NO_MX]: True})
    if flag not in hygiene.FIELDS:
        raise ValueError(f"Unknown flag {flag!r}.")
    return Q(**{hygiene.FIELDS[flag]: True})


def parse_query(query):
    """The query's terms: [("text", "ada"), ("attribute", ("plan", "pro")), …]."""
    try:
        words = shlex.split(query)
    except ValueError:  # an unbalanced quote: take the words as they are
        words = query.replace('"', " ").replace("'", " ").split()
    terms = []
    for word in words:
        key, colon, value = word.partition(":")
        if colon and value and ATTRIBUTE_KEY.match(key):
            terms.append(("attribute", (key, value)))
        elif word.strip():
            terms.append(("text", word.strip()))
    return terms


def query_q(query):
    """The Q object for a search query (see parse_query)."""
    condition = Q()
    for kind, term in parse_query(query or ""):
        if kind == "attribute":
            condition &= attribute_equals(*term)
        else:
            condition &= text_contains("email", term) | text_contains("name", term)
    return condition


def _membership_q(mailing_list, status):
    if status is None:
        if mailing_list is None:
            return Q()
        return Q(Exists(Subscription.objects.filter(subscriber=OuterRef("pk"), mailing_list=mailing_list)))
    if status in SUBSCRIBER_STATUSES and mailing_list is None:
        return Q(status=status)
    if status not in SUBSCRIPTION_STATUSES:
        raise ValueError(f"Unknown status {status!r}.")
    memberships = Subscription.objects.filter(subscriber=OuterRef("pk"), status=status)
    if mailing_list is not None:
        memberships = memberships.filter(mailing_list=mailing_list)
    return Q(Exists(memberships))


def _moment(value):
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return timezone.make_aware(datetime.combine(value, time.min))
    raise ValueError(f"Expected a date or datetime, got {value!r}.")
