"""Parsing what comes back: DSNs (RFC 3464), ARF complaints (RFC 5965) and old-style bounces."""

from pathlib import Path

import pytest

from campaigns import bounces

SAMPLES = Path(__file__).parent / "fixtures" / "bounces"
VALUES = {
    "verp": "bounces+abcdefghijklmnopqrstuvwxyz234567@bounce.alice.example",
    "recipient": "bob@example.org",
    "message_id": "<AbCd-token_123@alice.example>",
    "fbl_address": "fbl@bounce.alice.example",
}


def sample(name, **values):
    """A recorded returned mail with our addresses filled in, as bytes."""
    text = (SAMPLES / f"{name}.eml").read_text()
    for key, value in {**VALUES, **values}.items():
        text = text.replace("{" + key + "}", value)
    return text.replace("\n", "\r\n").encode()


def test_postfix_user_unknown_is_one_hard_bounce_with_every_clue():
    # when
    reports = bounces.parse(sample("postfix_user_unknown"))
    # then
    assert len(reports) == 1
    report = reports[0]
    assert report.kind == bounces.HARD_BOUNCE
    assert report.recipient == "bob@example.org"
    assert report.status == "5.1.1"
    assert report.diagnostic == (
        "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table"
    )
    assert report.message_ids == ["<AbCd-token_123@alice.example>"]
    assert report.return_paths == [VALUES["verp"]]
    assert report.report_id == "<20240514091203.4Q8ZbL0vX4z9sPK@mail.example.net>"
    assert report.detail.startswith("5.1.1 550 5.1.1 <bob@example.org>")


def test_mailbox_full_is_a_soft_bounce():
    reports = bounces.parse(sample("gmail_mailbox_full"))
    assert [(r.kind, r.recipient, r.status) for r in reports] == [(bounces.SOFT_BOUNCE, "bob@example.org", "5.2.2")]
    assert reports[0].message_ids == ["<AbCd-token_123@alice.example>"]
    assert "over quota" in reports[0].diagnostic


def test_delayed_dsn_is_a_deferral_not_a_bounce():
    reports = bounces.parse(sample("exim_delayed"))
    assert [(r.kind, r.status) for r in reports] == [(bounces.DEFERRED, "4.7.1")]
    assert reports[0].return_paths == [VALUES["verp"]]


def test_arf_abuse_report_is_a_complaint_naming_our_return_path_first():
    reports = bounces.parse(sample("arf_abuse"))
    assert len(reports) == 1
    report = reports[0]
    assert report.kind == bounces.COMPLAINT
    assert report.recipient == "bob@example.org"
    assert report.return_paths == [VALUES["verp"], "fbl@bounce.alice.example"]
    assert report.message_ids == ["<AbCd-token_123@alice.example>"]
    assert report.diagnostic == "Feedback-Type: abuse (reported by ISP-FBL/2.1)"


def test_arf_not_spam_report_asks_for_nothing():
    assert bounces.parse(sample("arf_not_spam")) == []


def test_old_style_bounce_without_dsn_part_is_read_from_its_text():
    reports = bounces.parse(sample("qmail_failure_notice"))
    assert [(r.kind, r.status) for r in reports] == [(bounces.HARD_BOUNCE, "5.1.1")]
    assert reports[0].return_paths == [VALUES["verp"]]
    assert "User unknown" in reports[0].diagnostic


def test_out_of_office_reply_is_not_a_bounce():
    assert bounces.parse(sample("out_of_office")) == []


def test_garbage_bytes_are_not_a_bounce():
    assert bounces.parse(b"\x00\xff not a mail at all") == []


@pytest.mark.parametrize(
    ("status", "action", "kind"),
    [
        ("5.1.1", "failed", bounces.HARD_BOUNCE),
        ("5.1.10", "failed", bounces.HARD_BOUNCE),
        ("5.0.0", "failed", bounces.HARD_BOUNCE),
        ("5.4.4", "failed", bounces.HARD_BOUNCE),
        ("5.2.2", "failed", bounces.SOFT_BOUNCE),
        ("5.7.1", "failed", bounces.SOFT_BOUNCE),
        ("4.4.7", "failed", bounces.SOFT_BOUNCE),
        ("4.7.1", "delayed", bounces.DEFERRED),
        ("2.0.0", "delivered", None),
        ("2.0.0", "relayed", None),
    ],
)
def test_classify_follows_rfc_3463_subjects(status, action, kind):
    assert bounces.classify(status, action=action) == kind
