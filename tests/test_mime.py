import email
import email.policy
import re

import pytest

from campaigns.mime import HeaderInjection, build_message, make_message_id

HTML = "<html><body><p>Hello <a href=\"https://example.com/a?b=1&amp;c=2\">there</a>.</p></body></html>"
TEXT = "Hello there (https://example.com/a?b=1&c=2).\n"


def build(**overrides):
    fields = dict(
        from_name="Example News", from_email="news@example.com",
        to_email="bob@example.org", to_name="Bob", subject="Weekly news",
        html=HTML, text=TEXT, message_id="<abc123@example.com>",
        date="Mon, 20 Nov 2023 10:00:00 +0000",
    )
    fields.update(overrides)
    return build_message(**fields)


def parse(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_a_plain_message_parses_with_both_parts_text_first():
    message = parse(build())
    assert message["From"] == "Example News <news@example.com>"
    assert message["To"] == "Bob <bob@example.org>"
    assert message["Subject"] == "Weekly news"
    assert message["Date"] == "Mon, 20 Nov 2023 10:00:00 +0000"
    assert message["Message-ID"] == "<abc123@example.com>"
    assert message["MIME-Version"] == "1.0"
    assert message.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == TEXT
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == HTML
    assert all(not part.defects for part in message.walk())


def test_every_line_ends_with_crlf_and_none_is_longer_than_998():
    raw = build(html="<p>" + "x" * 3000 + "</p>", text="y" * 2500)
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_ascii_parts_with_short_lines_are_sent_7bit_unencoded():
    raw = build()
    assert raw.count(b"Content-Transfer-Encoding: 7bit") == 2
    assert b"Hello there (https://example.com/a?b=1&c=2).\r\n" in raw
    assert HTML.encode() in raw


def test_non_ascii_parts_are_quoted_printable_and_decode_back():
    text = "Grüße aus München — 🎉\nZweite Zeile\n"
    html = "<p>Grüße aus München — 🎉</p>"
    message = parse(build(text=text, html=html))
    assert message.get_body(("plain",))["Content-Transfer-Encoding"] == "quoted-printable"
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == html


def test_an_ascii_part_with_a_line_over_998_characters_is_quoted_printable():
    long_line = "<p>" + "word " * 300 + "</p>"
    message = parse(build(html=long_line))
    html_part = message.get_body(("html",))
    assert html_part["Content-Transfer-Encoding"] == "quoted-printable"
    assert html_part.get_content().replace("\r\n", "\n") == long_line


def test_a_line_of_exactly_998_characters_stays_7bit_and_999_does_not():
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\n" + b"a" * 998 + b"\r\n--" in build(text="a" * 998)
    raw = build(text="b" * 999)
    assert raw.count(b"Content-Transfer-Encoding: quoted-printable") == 1
    assert parse(raw).get_body(("plain",)).get_content() == "b" * 999


def test_lines_starting_with_from_or_a_dot_are_left_alone():
    text = "From the team\n.hidden dot line\n..two dots\n.\nend\n"
    raw = build(text=text)
    assert b"\r\nFrom the team\r\n.hidden dot line\r\n..two dots\r\n.\r\nend\r\n" in raw
    assert parse(raw).get_body(("plain",)).get_content().replace("\r\n", "\n") == text


@pytest.mark.parametrize("subject", [
    "Grüße aus München",
    "Party time 🎉🎂 with emoji",
    "Ünïcödé " * 30,
    "A long ASCII subject line that keeps going " * 6,
    "Looks like =?utf-8?q?an_encoded_word?= but is not",
    "日本語の件名です。長い件名をテストします。" * 4,
])
def test_subjects_round_trip_exactly(subject):
    raw = build(subject=subject)
    head = raw.split(b"\r\n\r\n")[0]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert parse(raw)["Subject"] == subject


@pytest.mark.parametrize("name", ["Zoë Müller", "Dr. Who", 'Bob "the" Builder', "Smith, John", "🎉 Party Team", "back\\slash"])
def test_display_names_round_trip(name):
    message = parse(build(from_name=name, to_name=name))
    assert message["From"].addresses[0].display_name == name
    assert message["From"].addresses[0].addr_spec == "news@example.com"
    assert message["To"].addresses[0].display_name == name


def test_a_non_ascii_domain_is_written_in_idna():
    raw = build(to_email="anna@bücher.example", from_email="news@münchen.example")
    message = parse(raw)
    assert message["To"].addresses[0].addr_spec == "anna@xn--bcher-kva.example"
    assert message["From"].addresses[0].addr_spec == "news@xn--mnchen-3ya.example"


def test_reply_to_and_extra_headers_are_written_before_the_mime_fields():
    raw = build(reply_to="replies@example.com", headers={
        "List-Unsubscribe": "<https://example.com/u/" + "t" * 80 + ">, <mailto:u@example.com>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    })
    message = parse(raw)
    assert message["Reply-To"] == "replies@example.com"
    assert message["List-Unsubscribe"] == "<https://example.com/u/" + "t" * 80 + ">, <mailto:u@example.com>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    head = raw.split(b"\r\n\r\n")[0].decode()
    assert head.index("List-Unsubscribe-Post:") < head.index("MIME-Version:")


def test_a_message_without_html_is_a_single_text_part():
    message = parse(build(html=""))
    assert message.get_content_type() == "text/plain"
    assert message.get_content().replace("\r\n", "\n") == TEXT


def test_the_date_defaults_to_now_in_rfc_5322_form():
    raw = build(date=None)
    date = parse(raw)["Date"]
    assert re.fullmatch(r"\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000", str(date))


def test_make_message_id_is_unique_and_on_the_domain():
    first, second = make_message_id("example.com"), make_message_id("example.com")
    assert first != second
    assert re.fullmatch(r"<[A-Za-z0-9_-]{22}@example\.com>", first)
    assert make_message_id("bücher.example").endswith("@xn--bcher-kva.example>")


@pytest.mark.parametrize("field", ["subject", "from_name", "to_name", "from_email", "to_email", "reply_to", "message_id", "date"])
@pytest.mark.parametrize("evil", ["\r\nBcc: victim@example.com", "\nX-Evil: 1", "a\rb", "nul\x00byte"])
def test_line_breaks_in_any_header_are_refused(field, evil):
    value = {"from_email": "news@example.com", "to_email": "bob@example.org", "reply_to": "r@example.com",
             "message_id": "<a@example.com>", "date": "Mon, 20 Nov 2023 10:00:00 +0000"}.get(field, "Hello")
    with pytest.raises(HeaderInjection):
        build(**{field: value + evil})


@pytest.mark.parametrize("headers", [
    {"List-Unsubscribe": "<https://example.com/u>\r\nBcc: victim@example.com"},
    {"X-Tag": "a\nb"},
    {"Bad Name": "value"},
    {"X-Evil:\r\nBcc": "victim@example.com"},
    {"X-Colon:": "value"},
])
def test_bad_extra_headers_are_refused(headers):
    with pytest.raises(HeaderInjection):
        build(headers=headers)


def test_extra_headers_cannot_replace_the_ones_build_message_writes():
    with pytest.raises(ValueError, match="pass it as an argument"):
        build(headers={"Subject": "Other"})


@pytest.mark.parametrize("address", ["not-an-address", "a@b@c d", "two@example.com, three@example.com", "<x@example.com>", "ünï@example.com"])
def test_odd_addresses_are_refused(address):
    with pytest.raises(ValueError):
        build(to_email=address)
