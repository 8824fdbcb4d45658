"""SpamAssassin in the pre-send check: our spamc-protocol client against a real spamd on loopback
(tests/spamd.py), its verdict and rules in the check, the cache by content, and spamd down."""

import re
from decimal import Decimal

import pytest

from campaigns import broadcasts, presend, spamassassin
from tests.sending_factories import BroadcastFactory, audience, backend_for
from tests.smtp import free_port
from tests.spamd import GTUBE, spamd, spamd_server  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # starts spamd

FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p>'
HAM = ("<p>Hello {{ subscriber.first_name }},</p><p>Spring has come to the garden shop: new seeds, tools and "
       "plants are on the shelves, and the workshop on Saturday shows how to start tomatoes indoors.</p>" + FOOTER)
SPAM = f"<p>{GTUBE}</p>" + FOOTER


def raw_message(body):
    return ("From: Shop <news@alice.example>\r\nTo: reader@example.org\r\nSubject: Spring at the shop\r\n"
            "Date: Mon, 03 Mar 2025 08:00:00 +0000\r\nMessage-ID: <spring-2025@alice.example>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + body + "\r\n").encode()


@pytest.fixture(autouse=True)
def _public_site(settings):
    settings.SITE_URL, settings.SITE_HOST = "https://mail.example.com", "mail.example.com"


@pytest.fixture
def newsletter(smtp_server):
    from tests.factories import MailingListFactory

    backend_for(smtp_server, price_per_thousand=Decimal("1"))
    mailing_list = MailingListFactory(name="Newsletter")
    audience(mailing_list, 1)
    return mailing_list


def spam_results(results):
    return [(r.level, r.detail) for r in results if r.title == "SpamAssassin"]


# --- The client, against the real spamd ---------------------------------------------------------------


def test_it_scores_the_gtube_message_as_spam_and_names_the_rule(spamd):
    report = spamassassin.check(raw_message(GTUBE), spamd.url)

    assert report.is_spam is True
    assert report.threshold == 5.0
    assert report.score >= 1000
    gtube = next(rule for rule in report.rules if rule.name == "GTUBE")
    assert gtube == spamassassin.Rule("GTUBE", 1000.0, "BODY: Generic Test for Unsolicited Bulk Email")


def test_it_scores_an_ordinary_message_as_ham(spamd):
    report = spamassassin.check(raw_message("Hello Sam, the workshop on Saturday starts at ten."), spamd.url)

    assert (report.is_spam, report.threshold) == (False, 5.0)
    assert report.score < 5
    assert "GTUBE" not in [rule.name for rule in report.rules]


def test_it_reads_descriptions_that_run_over_two_lines():
    report = spamassassin.rules(
        "Content analysis details:   (6.1 points, 5.0 required)\n\n"
        " pts rule name              description\n"
        "---- ---------------------- --------------------------------------------------\n"
        " 3.5 BAYES_99               BODY: Bayes spam probability is 99 to 100%\n"
        "                            [score: 1.0000]\n"
        " 2.6 A_VERY_LONG_RULE_NAME_HERE Long names push the description\n"
        "-0.0 NO_RELAYS              Informational: message was not relayed via SMTP\n"
    )

    assert report == [
        spamassassin.Rule("BAYES_99", 3.5, "BODY: Bayes spam probability is 99 to 100% [score: 1.0000]"),
        spamassassin.Rule("A_VERY_LONG_RULE_NAME_HERE", 2.6, "Long names push the description"),
        spamassassin.Rule("NO_RELAYS", -0.0, "Informational: message was not relayed via SMTP"),
    ]


def test_an_error_answer_is_a_spamd_error(spamd):
    with pytest.raises(spamassassin.SpamdError) as error:
        spamassassin.parse(b"SPAMD/1.0 76 Bad header line: (EOF)\r\n\r\n")
    assert str(error.value) == "spamd refused the message: 76 Bad header line: (EOF)."


def test_an_address_that_is_not_spamd_is_refused():
    with pytest.raises(spamassassin.SpamdError) as error:
        spamassassin.check(b"x", "http://127.0.0.1:783")
    assert str(error.value) == "'http://127.0.0.1:783' is not a spamd address; write tcp://host:port or unix:///path."


# --- In the pre-send check ----------------------------------------------------------------------------


def test_the_check_shows_the_score_and_the_rules_and_spam_blocks_sending(spamd, newsletter):
    broadcast = BroadcastFactory(lists=[newsletter], body=SPAM)

    [(level, detail)] = spam_results(presend.run(broadcast))

    assert level == "error"
    assert re.fullmatch(r"Score 10\d\d\.\d \(spam from 5\.0\): SpamAssassin calls this spam, and most filters would "
                        r"too\. Rules that fired: GTUBE \(\+1000\.0, BODY: Generic Test for Unsolicited Bulk Email\)"
                        r".*\. Change what the rules point at, then check again\.", detail)
    with pytest.raises(broadcasts.BroadcastError) as refused:
        broadcasts.send_now(broadcast)
    assert refused.value.reasons == [detail]


def test_an_ordinary_newsletter_passes_with_its_score(spamd, newsletter):
    broadcast = BroadcastFactory(lists=[newsletter], body=HAM)

    [(level, detail)] = spam_results(presend.run(broadcast))

    report = spamassassin.check(presend.build_sample(broadcast).raw, spamd.url)
    assert report.score < 2.5
    assert level == "ok"
    assert detail.startswith(f"Score {report.score:.1f} (spam from 5.0)")
    assert broadcasts.problems(broadcast) == []


def test_the_verdict_is_cached_by_content_and_asked_again_when_it_changes(spamd, newsletter, settings):
    broadcast = BroadcastFactory(lists=[newsletter], body=SPAM)
    first = spam_results(presend.run(broadcast))
    settings.SPAMD_URL = f"tcp://127.0.0.1:{free_port()}"  # nobody listens there now

    again = spam_results(presend.run(broadcast))
    broadcast.body = HAM
    changed = spam_results(presend.run(broadcast))

    assert again == first
    assert changed == [("warning", f"spamd at {settings.SPAMD_URL} did not answer ([Errno 111] Connection refused); "
                                   "the other checks ran. Start spamd, or clear SPAMD_URL to stop asking it.")]


def test_spamd_down_is_a_warning_that_does_not_block(newsletter, settings):
    settings.SPAMD_URL = f"tcp://127.0.0.1:{free_port()}"
    broadcast = BroadcastFactory(lists=[newsletter], body=SPAM)

    assert [level for level, _ in spam_results(presend.run(broadcast))] == ["warning"]
    assert broadcasts.problems(broadcast) == []


def test_without_spamd_url_spamassassin_is_not_asked(newsletter, settings):
    settings.SPAMD_URL = ""

    assert spam_results(presend.run(BroadcastFactory(lists=[newsletter], body=SPAM))) == []
