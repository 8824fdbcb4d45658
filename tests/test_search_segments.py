"""Subscriber search and segments: every filter, field and operator; one query; the dashboard pages."""

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from lists import segments
from lists.models import Segment, Subscriber, Subscription, Tag
from lists.search import parse_query, search_subscribers
from lists.segments import SegmentError, conditions_q, subscribers_matching, validate_conditions
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def cast():
    """Four subscribers on two lists, with tags, attributes and ages."""
    news, offers = MailingListFactory(name="News"), MailingListFactory(name="Offers")
    vip = Tag.objects.create(name="vip")
    people = {
        "ada": SubscriberFactory(email="ada.lovelace@gmail.com", name="Ada Lovelace",
                                 attributes={"plan": "pro", "age": "36", "city": "London"}),
        "grace": SubscriberFactory(email="grace@navy.mil", name="Grace Hopper", attributes={"plan": "free", "age": 85}),
        "linus": SubscriberFactory(email="linus@kernel.org", name="", attributes={"age": "n/a"},
                                   status=Subscriber.BLOCKLISTED),
        "tim": SubscriberFactory(email="tim_50%@web.org", name="Tim", attributes={}),
    }
    Subscriber.objects.filter(pk=people["tim"].pk).update(created_at=timezone.now() - timedelta(days=400))
    SubscriptionFactory(subscriber=people["ada"], mailing_list=news, status=Subscription.CONFIRMED)
    SubscriptionFactory(subscriber=people["grace"], mailing_list=news, status=Subscription.UNCONFIRMED)
    SubscriptionFactory(subscriber=people["linus"], mailing_list=news, status=Subscription.UNSUBSCRIBED)
    SubscriptionFactory(subscriber=people["tim"], mailing_list=offers, status=Subscription.CONFIRMED)
    people["ada"].tags.add(vip)
    people["tim"].tags.add(vip)
    return {"news": news, "offers": offers, "vip": vip, **people}


def names(queryset, cast):
    by_pk = {cast[k].pk: k for k in ("ada", "grace", "linus", "tim")}
    return sorted(by_pk[pk] for pk in queryset.values_list("pk", flat=True))


# --- Search ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("query, expected", [
    ("", ["ada", "grace", "linus", "tim"]),
    ("GMAIL", ["ada"]),
    ("hopper", ["grace"]),
    ("ada lovelace", ["ada"]),
    ('"grace hopper"', ["grace"]),
    ("ada hopper", []),
    ("plan:pro", ["ada"]),
    ("plan:pro london", []),
    ("city:London ada", ["ada"]),
    ("age:85", ["grace"]),  # stored as a number by the API
    ("age:36", ["ada"]),
    ("50%", ["tim"]),  # % and _ match themselves
    ("tim_5", ["tim"]),
    ("o%", []),
    ('"unbalanced', []),
    ("lov", ["ada"]),  # words match from their start…
    ("ovelace", []),  # …not from their middle
    ("Ada.Lovelace@gmail.com", ["ada"]),  # a full address
    ("@navy", ["grace"]),
    ("navy.mil", ["grace"]),
    ("mil.navy", []),  # the words of a term stand together, as typed
    ("grace@", ["grace"]),
    ("@", ["ada", "grace", "linus", "tim"]),  # no word in it: a substring of the address
])
def test_search_matches_email_name_and_attributes(cast, query, expected):
    assert names(search_subscribers(query), cast) == expected



def test_search_terms_are_parsed_into_text_and_attributes():
    assert parse_query('ada plan:pro "grace hopper" :x url:') == [
        ("text", "ada"), ("attribute", ("plan", "pro")), ("text", "grace hopper"), ("text", ":x"), ("text", "url:")]


def test_search_uses_the_word_index_and_ilike_only_to_keep_words_together(cast):
    sql = str(search_subscribers("ada").query)
    assert "lists_search_document(" in sql and "ILIKE" not in sql and "UPPER(" not in sql
    sql = str(search_subscribers("ada.lovelace").query)
    assert "lists_search_document(" in sql and '."email" ILIKE %ada.lovelace%' in sql


@pytest.mark.parametrize("query", ["ada", "lovelace gmail", "grace@navy.mil", "hopper plan:free", "zzz"])
def test_rare_and_frequent_words_find_the_same_subscribers(cast, query, monkeypatch):
    """Frequent words are filtered while walking the newest rows; rare ones are looked up in the word
    index first (id = ANY(ARRAY(…))). Which one follows the index statistics; both give the same rows."""
    from lists import search

    results = {}
    for share, uses_array in ((0.5, False), (0.0, True)):
        monkeypatch.setattr(search, "_common_words", lambda: [("x", share)] if share else [])
        monkeypatch.setattr(search, "word_share", lambda term: share)
        found = search_subscribers(query)
        assert ("= ANY(ARRAY(" in str(found.query)) is uses_array
        results[share] = list(found)
    assert results[0.5] == results[0.0]


def test_a_term_longer_than_any_address_or_name_matches_nobody(cast):
    assert names(search_subscribers("a" * 3000), cast) == []  # a tsquery word has at most 2,047 bytes
    assert names(search_subscribers("a" * 254), cast) == []


def test_word_share_reads_the_common_words_of_the_index_statistics(monkeypatch):
    from lists import search

    monkeypatch.setattr(search, "_common_words", lambda: [("gmail", 0.1), ("grace", 0.05), ("gray", 0.05)])
    assert search.word_share("gmail") == pytest.approx(0.1)
    assert search.word_share("gr") == pytest.approx(1 - 0.95 * 0.95)  # every common word it starts
    assert search.word_share("grace@gmail") == pytest.approx(0.05 * 0.1)  # words of a term: all needed
    assert search.word_share("zzz") == 0.0
    monkeypatch.setattr(search, "_common_words", lambda: [])  # no statistics yet: the index goes first
    assert search.word_share("gmail") == 0.0


def test_search_plans_follow_the_statistics_after_analyze(cast):
    """Against the real statistics: after ANALYZE the word index's common words are read (cached a minute)."""
    from lists import search

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE lists_subscriber")
    search._statistics["at"] = -search.STATISTICS_SECONDS
    assert isinstance(search._common_words(), list)
    assert names(search_subscribers("gmail"), cast) == ["ada"]


def test_search_filters_by_list_status_tag_and_dates(cast):
    news, vip = cast["news"], cast["vip"]
    assert names(search_subscribers(mailing_list=news), cast) == ["ada", "grace", "linus"]
    assert names(search_subscribers(mailing_list=news, status="unconfirmed"), cast) == ["grace"]
    assert names(search_subscribers(status="confirmed"), cast) == ["ada", "tim"]  # on any list
    assert names(search_subscribers(status="blocklisted"), cast) == ["linus"]
    assert names(search_subscribers(status="active"), cast) == ["ada", "grace", "tim"]
    assert names(search_subscribers(tag=vip), cast) == ["ada", "tim"]
    assert names(search_subscribers(tag=vip.pk, mailing_list=cast["offers"]), cast) == ["tim"]
    a_year_ago = timezone.now() - timedelta(days=365)
    assert names(search_subscribers(created_before=a_year_ago), cast) == ["tim"]
    assert names(search_subscribers(created_after=a_year_ago.date()), cast) == ["ada", "grace", "linus"]
    segment = Segment.objects.create(name="Pros", conditions=[{"field": "attributes.plan", "op": "is", "value": "pro"}])
    assert names(search_subscribers(segment=segment), cast) == ["ada"]


def test_search_refuses_an_unknown_status(cast):
    with pytest.raises(ValueError, match="Unknown status 'gone'"):
        search_subscribers(status="gone")
    with pytest.raises(ValueError):
        search_subscribers(status="blocklisted", mailing_list=cast["news"])


def test_search_lists_newest_first(cast):
    assert list(search_subscribers("")) == [cast["linus"], cast["grace"], cast["ada"], cast["tim"]]


# --- Segments: fields and operators -----------------------------------------------------------------


def lists_and_tags(cast):
    return {"news": cast["news"].pk, "offers": cast["offers"].pk, "vip": cast["vip"].pk}


CONDITIONS = [
    (("email", "is", "GRACE@navy.mil"), ["grace"]),
    (("email", "is_not", "grace@navy.mil"), ["ada", "linus", "tim"]),
    (("email", "contains", "lovelace"), ["ada"]),
    (("email", "not_contains", "o"), ["grace"]),
    (("email", "starts_with", "li"), ["linus"]),
    (("email", "ends_with", ".org"), ["linus", "tim"]),
    (("name", "is", "tim"), ["tim"]),
    (("name", "contains", "hop"), ["grace"]),
    (("name", "is_empty", None), ["linus"]),
    (("name", "is_not_empty", None), ["ada", "grace", "tim"]),
    (("attributes.plan", "is", "pro"), ["ada"]),
    (("attributes.plan", "is_not", "pro"), ["grace", "linus", "tim"]),
    (("attributes.city", "contains", "ond"), ["ada"]),
    (("attributes.city", "not_contains", "ond"), ["grace", "linus", "tim"]),
    (("attributes.age", "exists", None), ["ada", "grace", "linus"]),
    (("attributes.age", "not_exists", None), ["tim"]),
    (("attributes.age", "gt", "40"), ["grace"]),
    (("attributes.age", "lt", "40.5"), ["ada"]),
    (("list", "subscribed", "news"), ["ada", "grace"]),
    (("list", "confirmed", "news"), ["ada"]),
    (("list", "unconfirmed", "news"), ["grace"]),
    (("list", "unsubscribed", "news"), ["linus"]),
    (("list", "not_subscribed", "news"), ["linus", "tim"]),
    (("tag", "has", "vip"), ["ada", "tim"]),
    (("tag", "has_not", "vip"), ["grace", "linus"]),
    (("created_at", "older_than_days", "30"), ["tim"]),
    (("created_at", "newer_than_days", 30), ["ada", "grace", "linus"]),
]


@pytest.mark.parametrize("condition, expected", CONDITIONS, ids=["-".join(map(str, c[:2])) for c, _ in CONDITIONS])
def test_each_field_and_operator(cast, condition, expected):
    field, op, value = condition
    value = lists_and_tags(cast).get(value, value)
    conditions = [{"field": field, "op": op, "value": value}]

    assert validate_conditions(conditions) == []
    assert names(subscribers_matching(conditions), cast) == expected


def test_all_and_any_combine_conditions(cast):
    conditions = [{"field": "tag", "op": "has", "value": cast["vip"].pk},
                  {"field": "list", "op": "subscribed", "value": cast["news"].pk}]
    assert names(subscribers_matching(conditions, "all"), cast) == ["ada"]
    assert names(subscribers_matching(conditions, "any"), cast) == ["ada", "grace", "tim"]


def test_a_segment_compiles_to_one_query_without_touching_the_database(cast, django_assert_num_queries):
    conditions = [{"field": f, "op": o, "value": lists_and_tags(cast).get(v, v)} for (f, o, v), _ in CONDITIONS]
    segment = Segment.objects.create(name="Everything", match="any", conditions=conditions)

    with django_assert_num_queries(0):
        query = segments.segment_queryset(segment)
    with CaptureQueriesContext(connection) as captured:
        found = list(query.values_list("pk", flat=True))
        subquery = list(Subscriber.objects.filter(pk__in=query.values("pk")).values_list("pk", flat=True))

    assert len(captured) == 2 and sorted(found) == sorted(subquery) and len(found) == 4


def test_validate_conditions_explains_each_problem(cast):
    assert validate_conditions([], "all") == ["Add at least one condition."]
    assert validate_conditions([{"field": "email", "op": "is", "value": "x"}], "some") == [
        "Match must be “all” or “any”."]
    assert validate_conditions("email is x") == ["Conditions must be a list."]
    assert validate_conditions([{"field": "email", "op": "is", "value": "x"}] * 51) == [
        "A segment can have at most 50 conditions."]
    assert validate_conditions([
        "email",
        {"field": "phone", "op": "is", "value": "1"},
        {"field": "attributes.", "op": "is", "value": "1"},
        {"field": "email", "op": "gt", "value": "1"},
        {"field": "name", "op": "is", "value": "  "},
        {"field": "attributes.age", "op": "gt", "value": "old"},
        {"field": "created_at", "op": "older_than_days", "value": "-3"},
        {"field": "list", "op": "confirmed", "value": 999999},
        {"field": "tag", "op": "has", "value": "vip"},
        {"field": "list", "op": "confirmed", "value": cast["news"].pk},
    ]) == [
        "Condition 1: Each condition needs a field, an operator and a value.",
        "Condition 2: “phone” is not a field segments can filter on.",
        "Condition 3: Name the attribute with letters, digits, _ . or - (for example attributes.plan).",
        "Condition 4: Choose how to compare email address: is, is not, contains, does not contain, starts with, "
        "ends with.",
        "Condition 5: Enter a value to compare with.",
        "Condition 6: “old” is not a number; “greater than” and “less than” compare numbers.",
        "Condition 7: Enter a number of days between 0 and 36500.",
        "Condition 8: There is no list with id 999999 any more; choose another.",
        "Condition 9: Choose one from the list.",
    ]


def test_compiling_bad_conditions_raises_a_segment_error():
    with pytest.raises(SegmentError) as raised:
        conditions_q([{"field": "phone", "op": "is", "value": "1"}])
    assert raised.value.messages == ["Condition 1: “phone” is not a field segments can filter on."]
    with pytest.raises(SegmentError, match="Add at least one condition."):
        conditions_q([])


def test_clean_conditions_stores_numbers_as_numbers(cast):
    assert segments.clean_conditions([{"field": "list", "op": "confirmed", "value": str(cast["news"].pk)},
                                      {"field": "attributes.age", "op": "gt", "value": "40.0"},
                                      {"field": "name", "op": "is_empty", "value": "ignored"}]) == [
        {"field": "list", "op": "confirmed", "value": cast["news"].pk},
        {"field": "attributes.age", "op": "gt", "value": 40},
        {"field": "name", "op": "is_empty", "value": None},
    ]


def test_other_apps_can_register_conditions(cast, monkeypatch):
    monkeypatch.setitem(segments.FIELDS, "opened_within_days", None)  # removed again after the test
    segments.register_condition(
        "opened_within_days", label="Opened a message in the last N days", ops={"yes": "did", "no": "did not"},
        kind="days", clean=segments.clean_days,
        compile=lambda op, days, key: Q(name__startswith="Ada") if op == "yes" else ~Q(name__startswith="Ada"),
    )
    conditions = [{"field": "opened_within_days", "op": "no", "value": "30"}]

    assert validate_conditions(conditions) == []
    assert names(subscribers_matching(conditions), cast) == ["grace", "linus", "tim"]
    assert segments.describe(conditions[0]) == "Opened a message in the last 30 days did not"


def test_describe_names_lists_and_tags(cast):
    names_ = {"lists": {cast["news"].pk: "News"}, "tags": {cast["vip"].pk: "vip"}}
    assert segments.describe({"field": "list", "op": "confirmed", "value": cast["news"].pk}, **names_) == (
        "List is confirmed on News")
    assert segments.describe({"field": "attributes.plan", "op": "is", "value": "pro"}) == "Attribute “plan” is pro"
    assert segments.describe({"field": "created_at", "op": "older_than_days", "value": 7}) == "Added more than 7 days ago"
    assert segments.describe({"field": "nope"}) == "(an invalid condition)"


# --- Segment pages --------------------------------------------------------------------------------


def form_data(name, *rows, match="all", **extra):
    data = {"name": name, "match": match, "field": [], "key": [], "op": [], "value": [], "list": [], "tag": []}
    for row in rows:
        for column in ("field", "key", "op", "value", "list", "tag"):
            data[column].append(row.get(column, ""))
    return {**data, **extra}


def test_segment_index_is_readable_by_viewers_and_denied_to_mallory(victor_client, mallory_client, cast):
    Segment.objects.create(name="Pros", conditions=[{"field": "list", "op": "confirmed", "value": cast["news"].pk}])

    response = victor_client.get(reverse("lists:segment_index"))

    assert response.status_code == 200
    assert "List is confirmed on News" in response.text
    assert reverse("lists:segment_create") not in response.text  # viewers do not edit
    assert mallory_client.get(reverse("lists:segment_index")).status_code == 403


def test_editor_creates_a_segment(bob_client, cast):
    response = bob_client.post(reverse("lists:segment_create"), form_data(
        "London pros", {"field": "attributes", "key": "plan", "op": "is", "value": "pro"},
        {"field": "list", "op": "confirmed", "list": str(cast["news"].pk)}, {"field": ""}, match="any"))

    assert response.status_code == 302 and response["Location"] == reverse("lists:segment_index")
    segment = Segment.objects.get()
    assert (segment.name, segment.match, segment.conditions) == ("London pros", "any", [
        {"field": "attributes.plan", "op": "is", "value": "pro"},
        {"field": "list", "op": "confirmed", "value": cast["news"].pk}])


def test_segment_form_shows_errors_next_to_each_condition_and_saves_nothing(bob_client, cast):
    response = bob_client.post(reverse("lists:segment_create"), form_data(
        "Broken", {"field": "email", "op": "contains", "value": "gmail"},
        {"field": "attributes", "key": "age", "op": "gt", "value": "old"}))

    assert response.status_code == 200
    assert "“old” is not a number" in response.text
    assert Segment.objects.count() == 0


def test_segment_preview_counts_live(bob_client, cast):
    response = bob_client.post(reverse("lists:segment_create"),
                               form_data("", {"field": "email", "op": "ends_with", "value": ".org"}, preview="1"),
                               HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert "<strong>2</strong> subscribers match." in response.text
    assert "tim_50%@web.org, linus@kernel.org" in response.text
    assert "<html" not in response.text


def test_segment_form_adds_a_row(bob_client, cast):
    response = bob_client.post(reverse("lists:segment_create"), form_data(
        "Two", {"field": "email", "op": "contains", "value": "a"}, add_row="1"))
    assert response.text.count("data-condition") == 3
    assert Segment.objects.count() == 0


def test_editor_edits_and_deletes_a_segment_but_a_viewer_cannot(bob_client, victor_client, cast):
    segment = Segment.objects.create(name="Old", conditions=[{"field": "email", "op": "contains", "value": "a"}])
    edit, delete = reverse("lists:segment_edit", args=[segment.pk]), reverse("lists:segment_delete", args=[segment.pk])

    assert victor_client.get(edit).status_code == 403
    assert victor_client.post(delete).status_code == 403
    assert Segment.objects.filter(pk=segment.pk, name="Old").exists()
    assert 'value="a"' in bob_client.get(edit).text
    bob_client.post(edit, form_data("New", {"field": "tag", "op": "has", "tag": str(cast["vip"].pk)}))
    segment.refresh_from_db()
    assert (segment.name, segment.conditions) == ("New", [{"field": "tag", "op": "has", "value": cast["vip"].pk}])
    assert bob_client.post(delete).status_code == 302
    assert not Segment.objects.exists()
