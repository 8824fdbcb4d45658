import dkim as dkimpy
import pytest

from campaigns import dkim
from campaigns.mime import build_message

# Key generation costs ~50 ms for RSA; one key per kind for the whole module.
KEYS = {kind: dkim.generate_key(kind) for kind in ("rsa", "ed25519")}


def dns_for(txt):
    def lookup(name, timeout=5):
        assert name == b"sel1._domainkey.example.com."
        return txt.encode()
    return lookup


def verify(signed, kind):
    return dkimpy.verify(signed, dnsfunc=dns_for(KEYS[kind][1]))


def campaign_message(**overrides):
    fields = dict(
        from_name="Zoë at Example", from_email="news@example.com", to_email="bob@example.org",
        subject="Grüße — this week's news " * 3, html="<p>Hello <b>Bob</b></p>\n",
        text="Hello Bob\n", message_id="<m1@example.com>", reply_to="replies@example.com",
        headers={"List-Unsubscribe": "<https://example.com/u/abc>, <mailto:u@example.com>",
                 "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
    )
    fields.update(overrides)
    return build_message(**fields)


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_signed_campaign_message_verifies_with_dkimpy(kind):
    signer = dkim.Signer("example.com", "sel1", KEYS[kind][0])
    signed = signer.sign(campaign_message())
    assert signed.startswith(b"DKIM-Signature: v=1; a=" + (b"rsa" if kind == "rsa" else b"ed25519") + b"-sha256;")
    assert verify(signed, kind) is True


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_h_covers_the_list_unsubscribe_headers_and_oversigns_from(kind):
    signed = dkim.Signer("example.com", "sel1", KEYS[kind][0]).sign(campaign_message())
    header = signed.split(b"\r\n\r\n")[0].decode()
    h_tag = header.split(" h=")[1].split(";")[0]
    assert h_tag == ("from:to:subject:date:message-id:reply-to:list-unsubscribe:"
                     "list-unsubscribe-post:mime-version:content-type:from")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_folded_headers_trailing_whitespace_and_blank_lines_at_the_end_verify(kind):
    raw = (
        b"From: Someone <news@example.com>\r\n"
        b"To: bob@example.org\r\n"
        b"Subject: A subject that is folded\r\n"
        b"\tonto a second line   with  spaces\r\n"
        b"Date: Mon, 20 Nov 2023 10:00:00 +0000\r\n"
        b"Message-ID: <m2@example.com>\r\n"
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=\"utf-8\"\r\n"
        b"\r\n"
        b"Trailing spaces here   \r\n"
        b"Tabs\tand    runs of  spaces\t\r\n"
        b"\r\n"
        b"\r\n"
        b"\r\n"
    )
    signed = dkim.Signer("example.com", "sel1", KEYS[kind][0]).sign(raw)
    assert verify(signed, kind) is True


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_message_with_an_empty_body_verifies(kind):
    raw = b"From: news@example.com\r\nTo: bob@example.org\r\nSubject: empty\r\n\r\n"
    signed = dkim.Signer("example.com", "sel1", KEYS[kind][0]).sign(raw)
    assert verify(signed, kind) is True


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_a_changed_body_or_subject_fails_verification(kind):
    signed = dkim.Signer("example.com", "sel1", KEYS[kind][0]).sign(campaign_message())
    assert verify(signed.replace(b"Hello Bob", b"Hello Eve"), kind) is False
    assert verify(signed.replace(b"Subject: =?utf-8?b?", b"Subject: =?utf-8?B?X", 1), kind) is False


def test_an_added_second_from_header_fails_verification_because_from_is_oversigned():
    signed = dkim.Signer("example.com", "sel1", KEYS["ed25519"][0]).sign(campaign_message())
    head, body = signed.split(b"\r\n\r\n", 1)
    tampered = head + b"\r\nFrom: attacker@evil.example\r\n\r\n" + body
    assert verify(tampered, "ed25519") is False


def test_only_whitespace_changes_in_a_body_still_verify_under_relaxed_canonicalisation():
    signed = dkim.Signer("example.com", "sel1", KEYS["rsa"][0]).sign(campaign_message())
    assert verify(signed.replace(b"Hello Bob\r\n", b"Hello \t  Bob   \r\n"), "rsa") is True
    assert verify(signed + b"\r\n\r\n", "rsa") is True


def test_the_body_canonicalisation_matches_rfc_6376():
    assert dkim.canonical_body(b"") == b""
    assert dkim.canonical_body(b"\r\n\r\n") == b""
    assert dkim.canonical_body(b" a  b \t\r\nc\r\n\r\n\r\n") == b" a b\r\nc\r\n"
    assert dkim.canonical_body(b"no newline") == b"no newline\r\n"


def test_generate_key_gives_a_dns_value_dkimpy_can_read():
    pem, txt = dkim.generate_key("ed25519")
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert txt.startswith("v=DKIM1; k=ed25519; p=")
    assert KEYS["rsa"][1].startswith("v=DKIM1; k=rsa; p=MIIBIjAN")


def test_generate_key_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="Unknown DKIM key kind"):
        dkim.generate_key("dsa")


@pytest.mark.parametrize("domain, selector, pem", [
    ("example.com", "sel1", "not a key"),
    ("example.com\r\nX: y", "sel1", KEYS["rsa"][0]),
    ("example.com", "sel;1", KEYS["rsa"][0]),
])
def test_a_signer_refuses_bad_configuration(domain, selector, pem):
    with pytest.raises(ValueError):
        dkim.Signer(domain, selector, pem)
