"""autoresponder/dns.py against the loopback DNS server (tests/dns_server.py)."""

import dkim
import pytest

from autoresponder import dns as ardns
from campaigns.dkim import Signer, generate_key
from tests.dns_server import dns_server, lookup_txt  # noqa: F401

LONG = "v=DKIM1; k=rsa; p=" + "A" * 392


def test_it_reads_txt_records_joining_their_strings(dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 -all", ("one ", "two")])

    assert sorted(ardns.txt("example.com")) == ["one two", "v=spf1 -all"]


def test_it_serves_a_txt_record_longer_than_255_characters_over_udp_and_tcp(dns_server):
    dns_server.set("sel._domainkey.example.com", "TXT", [LONG * 3])  # ~1,200 bytes: truncated over UDP

    assert ardns.txt("sel._domainkey.example.com.") == [LONG * 3]


def test_it_answers_empty_for_an_unknown_name_and_a_missing_type(dns_server):
    dns_server.set("example.com", "A", ["192.0.2.1"])

    assert ardns.txt("nowhere.example.com") == []
    assert ardns.txt("example.com") == []
    assert ardns.mx("example.com") == []


def test_it_sorts_mx_hosts_and_reads_a_null_mx(dns_server):
    dns_server.set("example.com", "MX", ["20 mx2.example.com.", "10 MX1.example.com."])
    dns_server.set("null.example.com", "MX", ["0 ."])

    assert ardns.mx("example.com") == [(10, "mx1.example.com"), (20, "mx2.example.com")]
    assert ardns.mx("null.example.com") == [(0, "")]


def test_it_returns_ipv4_and_ipv6_addresses_following_a_cname(dns_server):
    dns_server.set("mail.example.com", "A", ["192.0.2.10"])
    dns_server.set("mail.example.com", "AAAA", ["2001:db8::10"])
    dns_server.set("smtp.example.com", "CNAME", ["mail.example.com."])

    assert ardns.addresses("smtp.example.com") == ["192.0.2.10", "2001:db8::10"]


def test_it_never_appends_a_search_domain(dns_server):
    ardns.txt("example")

    assert dns_server.queries == [("example", "TXT")]


def test_it_raises_a_clear_error_on_servfail(dns_server):
    dns_server.servfail("broken.example.com")

    with pytest.raises(ardns.DNSLookupError, match="No DNS server could answer for TXT records of broken.example.com"):
        ardns.txt("broken.example.com")


def test_it_raises_a_clear_error_on_timeout(dns_server, settings):
    settings.DNS_TIMEOUT_SECONDS = 0.3
    dns_server.drop("slow.example.com")

    with pytest.raises(ardns.DNSLookupError, match="The DNS lookup of MX records for slow.example.com timed out"):
        ardns.mx("slow.example.com")


def test_it_raises_on_a_malformed_name(dns_server):
    with pytest.raises(ardns.DNSLookupError, match="is not a valid domain name"):
        ardns.txt("a" * 64 + ".example.com")


def test_a_dkim_signature_verifies_against_the_served_key(dns_server):
    pem, record = generate_key("rsa")
    dns_server.set("s1._domainkey.example.com", "TXT", [record])
    raw = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: Hi\r\n\r\nHello\r\n"

    assert dkim.verify(Signer("example.com", "s1", pem).sign(raw), dnsfunc=lookup_txt) is True
