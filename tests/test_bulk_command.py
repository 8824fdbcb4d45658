"""manage.py bulk_action: the dashboard's bulk actions on a filter, a segment or a list, from a terminal,
with a dry run, a question first and a progress bar."""

import io
import sys

import pytest
from django.core.management import CommandError, call_command

from lists import bulk_actions
from lists.models import Segment, Subscriber, Subscription, Tag
from tests.factories import MailingListFactory
from tests.sending_factories import audience

pytestmark = pytest.mark.django_db


@pytest.fixture
def news():
    """Six confirmed readers on News; two outsiders on Other."""
    news = MailingListFactory(name="News")
    audience(news, 6)
    audience(MailingListFactory(name="Other"), 2, prefix="outsider")
    return news


class Terminal(io.StringIO):
    """Standard input as a person at a terminal answers."""

    def isatty(self):
        return True


def run(*args, answer=None, monkeypatch=None):
    out = io.StringIO()
    if answer is not None:
        monkeypatch.setattr(sys, "stdin", Terminal(answer + "\n"))
    call_command("bulk_action", *args, stdout=out)
    return out.getvalue().splitlines()


def tags_of(email):
    return sorted(Subscriber.objects.get(email=email).tags.values_list("name", flat=True))


def test_a_dry_run_shows_the_count_and_changes_nothing(news):
    lines = run("tag", "--list", str(news.pk), "--tag", "spring", "--dry-run")

    assert lines == ["Add the tag “spring” to 6 subscribers.", "Dry run: nothing was changed."]
    assert not Tag.objects.filter(name="spring").exists()


def test_tagging_a_list_in_chunks_with_a_progress_bar(news, monkeypatch):
    monkeypatch.setattr(bulk_actions, "CHUNK", 4)

    lines = run("tag", "--list", str(news.pk), "--tag", "spring", "--yes")

    assert lines[0] == "Add the tag “spring” to 6 subscribers."
    assert lines[1].startswith("[####################..........]  67%  4 subscribers  ")
    assert lines[2].startswith("[##############################] 100%  6 subscribers  ")
    assert lines[3].startswith("Done in ") and lines[3].endswith(" s. Tagged 6 subscriber(s) with “spring”.")
    assert len(lines) == 4
    assert Tag.objects.get(name="spring").subscribers.count() == 6 and tags_of("outsider0@example.org") == []


def test_unsubscribing_a_segment_from_one_list(news):
    other = MailingListFactory(name="Weekly")
    for subscriber in Subscriber.objects.filter(email__in=["reader1@example.org", "reader2@example.org"]):
        Subscription.objects.create(subscriber=subscriber, mailing_list=other, status=Subscription.CONFIRMED)
    segment = Segment.objects.create(name="Ones and twos", match="any", conditions=[
        {"field": "email", "op": "starts_with", "value": "reader1"},
        {"field": "email", "op": "starts_with", "value": "reader2"}])

    lines = run("unsubscribe", "--segment", str(segment.pk), "--from-list", str(news.pk), "--yes")

    assert lines[0] == "Unsubscribe 2 subscribers from “News”."
    assert lines[-1].endswith(" s. Unsubscribed 2 subscription(s).")
    statuses = Subscription.objects.filter(subscriber__email__in=["reader1@example.org", "reader2@example.org"])
    assert sorted(statuses.values_list("mailing_list__name", "status")) == [
        ("News", "unsubscribed"), ("News", "unsubscribed"), ("Weekly", "confirmed"), ("Weekly", "confirmed")]
    assert Subscription.objects.filter(mailing_list=news, status=Subscription.CONFIRMED).count() == 4


def test_a_search_and_a_tag_filter_combine(news):
    run("tag", "--query", "reader1", "--tag", "vip", "--yes")
    Subscriber.objects.get(email="reader3@example.org").tags.add(Tag.objects.get(name="vip"))

    lines = run("untag", "--has-tag", "vip", "--query", "reader3", "--tag", "vip", "--yes")

    assert lines[-1].endswith(" s. Removed “vip” from 1 subscriber(s).")
    assert (tags_of("reader1@example.org"), tags_of("reader3@example.org")) == (["vip"], [])


def test_deleting_asks_for_the_count_to_be_typed(news, monkeypatch):
    with pytest.raises(CommandError, match="Nothing was changed."):
        run("delete", "--list", str(news.pk), answer="5", monkeypatch=monkeypatch)
    assert Subscriber.objects.count() == 8

    lines = run("delete", "--list", str(news.pk), answer="6", monkeypatch=monkeypatch)

    assert lines[0] == "Delete 6 subscribers, with all their subscriptions."
    assert lines[-1].endswith(" s. Deleted 6 subscriber(s).")
    assert sorted(Subscriber.objects.values_list("email", flat=True)) == ["outsider0@example.org",
                                                                         "outsider1@example.org"]


def test_other_actions_ask_yes_or_no(news, monkeypatch):
    with pytest.raises(CommandError, match="Nothing was changed."):
        run("tag", "--all", "--tag", "everyone", answer="n", monkeypatch=monkeypatch)
    assert not Tag.objects.filter(name="everyone").exists()

    run("tag", "--all", "--tag", "everyone", answer="y", monkeypatch=monkeypatch)

    assert Tag.objects.get(name="everyone").subscribers.count() == 8


def test_without_a_terminal_it_runs_only_with_yes(news):
    with pytest.raises(CommandError, match="add --yes to run it without a question, or --dry-run"):
        run("unsubscribe", "--list", str(news.pk))
    assert Subscription.objects.filter(status=Subscription.UNSUBSCRIBED).count() == 0


def test_nothing_matching_changes_nothing(news):
    lines = run("delete", "--query", "nobody-like-this", "--yes")

    assert lines == ["Delete 0 subscribers, with all their subscriptions.",
                     "No subscriber matches, so nothing was changed."]
    assert Subscriber.objects.count() == 8


def test_bad_arguments_are_refused_with_a_plain_message(news):
    cases = [
        (("tag", "--list", str(news.pk)), "Name the tag to add with --tag NAME."),
        (("untag", "--all", "--tag", "ghost"), "There is no tag named “ghost”, so no subscriber has it."),
        (("delete",), "Say which subscribers: --list, --status, --query, --has-tag, --segment or --flag, or --all"),
        (("delete", "--all", "--list", str(news.pk)), "--all means every subscriber"),
        (("delete", "--list", "999999"), "There is no list with id 999999."),
        (("unsubscribe", "--all", "--from-list", "999999"), "There is no list with id 999999."),
        (("delete", "--has-tag", "ghost"), "There is no tag named “ghost”."),
        (("delete", "--segment", "999999"), "There is no segment with id 999999."),
    ]
    for args, message in cases:
        with pytest.raises(CommandError) as refused:
            run(*args, "--yes")
        assert str(refused.value).startswith(message), args
    assert Subscriber.objects.count() == 8 and not Tag.objects.exists()


def test_a_segment_that_no_longer_compiles_is_refused(news):
    segment = Segment.objects.create(name="Broken", conditions=[{"field": "shoe_size", "op": "is", "value": "9"}])

    with pytest.raises(CommandError, match="This selection cannot be used: Condition 1: “shoe_size” is not a field"):
        run("delete", "--segment", str(segment.pk), "--yes")
    assert Subscriber.objects.count() == 8
