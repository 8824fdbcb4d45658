"""
Subscriber search, shared by the dashboard, the REST API and exports.

A query is split into terms (quotes keep words together: `"ada lovelace"`).
A term `key:value` matches subscribers whose attribute `key` equals `value`
(JSONB containment, served by the jsonb_path_ops GIN index). Any other term
matches words of the email address or the name, from their start: the words
are the runs of letters and digits ("ada.lovelace+news@gmail.com" has ada,
lovelace, news, gmail, com), so "gmail", "lov", "Lovelace", "news" and
"ada.lovelace@gmail.com" find that address, and "ovelace" does not. A term of
several words ("ada.lovelace", "@gmail.com", a full address) also needs them
side by side as typed (ILIKE on email or name); a term without any letter or
digit ("@", "+") is a plain substring match. All terms must match. The words
are indexed by migration 0008 (one GIN index over about 5 words a row; the two
trigram indexes it replaced cost 2.5 times as much CPU per imported row).

How a word is found depends on how common it is, read from the word index's
statistics (pg_stats after ANALYZE; the import runs it): a word on more than
1 % of subscribers is filtered while walking the created_at index newest first
(50 matches come soon); a rarer one, or any word before the first ANALYZE, is
looked up in the word index first (`id = ANY(ARRAY(subquery))`, so it stays
first whatever order or filters a caller adds). Postgres cannot make that
choice itself here: it estimates every prefix at 2 % until the statistics
hold 100 common words.

Measured on the data of bench/import.py (942,572 subscribers, Postgres 15,
2 shared cores at load 2-3), LIMIT 50 newest first (ORDER BY created_at DESC,
id DESC), median of 5:

  ""                          1.5 ms  Index Scan Backward on created_at
  "gmail", "lovelace", "lov"  6 / 9 / 7 ms  the same walk, filtered by the words
  "jürgen"                    5 ms    the same walk, with the ILIKE of a non-ASCII word
  "ada lovelace"             59 ms    word index first (6,152 ids), then by primary key
                                      (walking would take 45 ms here, but a pair that never
                                      meets would walk the whole table)
  "grace hopper" (no match)  19 ms    word index first (1.1 s with the trigram indexes: a walk)
  a full address             33 ms    word index first, ILIKE on the one row
  "zzqzz" (no match)          2.3 ms  word index first
  "plan:pro"                  1.9 ms  the walk, attributes @> filter
  "knuth" + list + status    15 ms    the walk, nested loop on subscription_unique

The walk stays cheap after a bulk import because the import gives every row
its own created_at (clock_timestamp()); with equal timestamps Postgres would
sort the whole group to break ties on id.
"""

import re
import shlex
import time as clock
from datetime import date, datetime, time

from django.db import connection
from django.db.models import BooleanField, Exists, F, Func, OuterRef, Q, Subquery, Value
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
    condition, words, share = Q(), Q(), 1.0
    for kind, term in parse_query(query or ""):
        if kind == "attribute":
            condition &= attribute_equals(*term)
        elif len(term) > LONGEST:
            condition &= Q(pk__in=[])  # longer than any address or name: matches nobody
        elif connection.vendor != "postgresql" or not WORD.search(term):
            # SQLite has no word index; a term without a letter or digit ("@", "+") has no word to look up.
            condition &= _contains(term)
        else:
            words &= Q(WordsMatch(term))
            if not SINGLE_WORD.match(term):  # the words must also stand together, as typed
                words &= _contains(term)
            share *= word_share(term)
    if not words:
        return condition
    if share >= FREQUENT:
        return condition & words  # walking the newest rows finds 50 matches soon
    # Rare words: their matches first, by the word index, whatever order and filters the caller adds.
    found = Subscriber.objects.filter(words).order_by().values("pk")
    return condition & Q(MatchedIds(found))


WORD = re.compile(r"[A-Za-z0-9]")
LONGEST = max(Subscriber._meta.get_field("email").max_length, Subscriber._meta.get_field("name").max_length)
SINGLE_WORD = re.compile(r"^[A-Za-z0-9]+$")  # its prefix query means exactly "a word starting with it"

# Below this share of subscribers (the words' index statistics), matches are found by the word index first;
# from it on, by walking the newest subscribers (50/0.01 = 5,000 rows at ~9 µs per row, ~45 ms, at most).
FREQUENT = 0.01
STATISTICS_SECONDS = 60
_statistics = {"at": -STATISTICS_SECONDS, "words": None}


def _contains(term):
    return text_contains("email", term) | text_contains("name", term)


class WordsMatch(Func):
    """Postgres: the subscriber's email and name hold words starting with each word of `term`
    (migration 0008's subscriber_search_words index)."""

    output_field = BooleanField()

    def __init__(self, term):
        super().__init__(F("email"), F("name"), Value(term))

    def as_sql(self, compiler, connection, **extra):
        (email, email_params), (name, name_params), (term, term_params) = (
            compiler.compile(e) for e in self.get_source_expressions())
        return (f"lists_search_document({email}, {name}) @@ lists_search_query({term})",
                [*email_params, *name_params, *term_params])


class MatchedIds(Func):
    """`id = ANY(ARRAY(subquery))`: the subquery runs once, first (an InitPlan), and the outer query
    looks its ids up by primary key; a plain IN (subquery) may be planned as a walk of the whole
    table probing the subquery's result."""

    output_field = BooleanField()

    def __init__(self, queryset):
        super().__init__(F("pk"), Subquery(queryset))

    def as_sql(self, compiler, connection, **extra):
        (pk, pk_params), (found, found_params) = (compiler.compile(e) for e in self.get_source_expressions())
        return f"{pk} = ANY(ARRAY{found})", [*pk_params, *found_params]


def word_share(term):
    """The estimated share of subscribers matching the term's words, from the word index's statistics
    (ANALYZE's most common words, as Postgres estimates a prefix itself once it has 100 of them):
    for each word the share of rows with a common word starting with it, multiplied over the words.
    0 without statistics: the index goes first, which costs at most the number of matches."""
    frequencies = _common_words()
    if not frequencies:
        return 0.0
    share = 1.0
    for word in re.findall(r"[^\W_]+", term.lower()):
        absent = 1.0
        for common, frequency in frequencies:
            if common.startswith(word):
                absent *= 1.0 - frequency
        share *= 1.0 - absent
    return share


def _common_words():
    now = clock.monotonic()
    if now - _statistics["at"] >= STATISTICS_SECONDS:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats"
                " WHERE schemaname = current_schema() AND tablename = 'subscriber_search_words'"
            )
            row = cursor.fetchone()
        words = list(zip(row[0], row[1])) if row and row[0] else []
        _statistics.update(at=now, words=words)
    return _statistics["words"]


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
