"""Every outcome of the sending-domain DNS checks, against a real DNS server on loopback."""

import pytest

from campaigns import domain_checks, domains
from campaigns.models import Backend, DkimKey, SendingDomain
from tests.dns_server import dns_server  # noqa: F401
from tests.sending_factories import SenderFactory, SMTPBackendFactory

pytestmark = pytest.mark.django_db

MAIL_IP = "93.184.215.10"  # a public address: private ones cannot be checked


@pytest.fixture
def smtp_backend():
    return SMTPBackendFactory(name="Relay", host="mail.example.net")


@pytest.fixture
def published(dns_server, smtp_backend):
    """example.com with every record published as the dashboard shows it."""
    sending_domain = domains.create_domain("example.com", dmarc_rua="dmarc@example.com")
    dns_server.set("mail.example.net", "A", [MAIL_IP])
    for record in domains.records(sending_domain):
        dns_server.set(record.name, record.type, [record.value])
    dns_server.set("example.com", "MX", ["10 mx.example.com."])
    return sending_domain


def results(sending_domain):
    return {r["key"]: r for r in domain_checks.check(sending_domain)}


def rsa_key(sending_domain):
    return sending_domain.keys.get(algorithm=DkimKey.RSA, state=DkimKey.ACTIVE)


def test_it_verifies_a_domain_whose_records_are_all_published(published):
    # when
    found = results(published)
    # then
    selector = rsa_key(published).selector
    assert {k: r["level"] for k, r in found.items()} == {
        f"dkim-{selector}": "ok", "spf": "ok", "dmarc": "ok", "alignment": "ok", "mx": "ok",
    }
    assert found["spf"]["detail"] == "The SPF record at example.com lets your active backends send (1 of 10 DNS lookups)."
    assert found["dmarc"]["detail"] == ("The DMARC record at _dmarc.example.com has the policy p=none "
                                        "(reports only; nothing is blocked).")
    assert found["mx"]["detail"] == "example.com receives mail (and bounces) at mx.example.com."
    published.refresh_from_db()
    assert published.status == SendingDomain.VERIFIED
    assert published.checked_at == published.verified_at
    assert domains.is_authenticated("example.com")[0] is True


def test_a_missing_dkim_record_is_an_error_with_the_record_to_publish(published, dns_server):
    # given
    key = rsa_key(published)
    dns_server.set(f"{key.selector}._domainkey.example.com", "TXT", [])
    # when
    found = results(published)[f"dkim-{key.selector}"]
    # then
    assert found["level"] == "error"
    assert found["detail"] == f"There is no DKIM record at {key.selector}._domainkey.example.com."
    assert found["fix"] == (f"Publish this TXT record at {key.selector}._domainkey.example.com: "
                            f"v=DKIM1; k=rsa; p={key.public_key}")
    assert found["record"] == {"type": "TXT", "name": f"{key.selector}._domainkey.example.com",
                               "value": f"v=DKIM1; k=rsa; p={key.public_key}"}
    published.refresh_from_db()
    assert published.status == SendingDomain.PENDING
    assert domains.is_authenticated("example.com") == (
        False, f"example.com is not verified: There is no DKIM record at {key.selector}._domainkey.example.com. "
               "See Sending → Domains for the exact records and check it again.")


def test_a_dkim_record_with_another_key_is_an_error(published, dns_server):
    # given
    key = rsa_key(published)
    dns_server.set(key.record_name, "TXT", ["v=DKIM1; k=rsa; p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAother"])
    # when
    found = results(published)[f"dkim-{key.selector}"]
    # then
    assert found["level"] == "error"
    assert found["detail"] == f"The DKIM record at {key.record_name} holds a different key than this domain signs with."
    assert found["fix"] == f"Replace the TXT record at {key.record_name} with: {key.record_value}"


def test_a_revoked_dkim_record_is_an_error(published, dns_server):
    key = rsa_key(published)
    dns_server.set(key.record_name, "TXT", ["v=DKIM1; k=rsa; p="])

    found = results(published)[f"dkim-{key.selector}"]

    assert (found["level"], found["detail"]) == (
        "error", f"The DKIM record at {key.record_name} has an empty key (p=), which means the key was revoked.")


def test_a_dkim_record_split_into_strings_by_the_dns_host_matches(published, dns_server):
    # given: the value in 255-byte strings, with a space after each semicolon dropped
    key = rsa_key(published)
    value = f"v=DKIM1;k=rsa;p={key.public_key}"
    dns_server.set(key.record_name, "TXT", [tuple(value[i:i + 200] for i in range(0, len(value), 200))])
    # then
    assert results(published)[f"dkim-{key.selector}"]["level"] == "ok"


def test_no_spf_record_is_an_error_with_the_suggested_record(published, dns_server):
    dns_server.set("example.com", "TXT", [])

    found = results(published)["spf"]

    assert found["level"] == "error"
    assert found["detail"] == "There is no SPF record at example.com."
    assert found["fix"] == "Publish this TXT record at example.com: v=spf1 a:mail.example.net ~all"


def test_two_spf_records_are_an_error(published, dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 a:mail.example.net ~all", "v=spf1 include:_spf.google.com -all",
                                          "google-site-verification=abc"])

    found = results(published)["spf"]

    assert found["level"] == "error"
    assert found["detail"] == "example.com has 2 SPF records; receivers treat that as an error and ignore them all."
    assert found["fix"] == ("Replace them with one TXT record at example.com: "
                            "v=spf1 a:mail.example.net include:_spf.google.com ~all")


def test_an_spf_record_without_the_sending_host_is_an_error_with_the_merged_record(published, dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 ip4:198.51.100.0/24 include:_spf.google.com -all"])
    dns_server.set("_spf.google.com", "TXT", ["v=spf1 ip4:172.217.0.0/16 ~all"])

    found = results(published)["spf"]

    assert found["level"] == "error"
    assert found["detail"] == (f"The SPF record at example.com does not let mail.example.net ({MAIL_IP}) send for "
                               "Relay (a receiver gets “fail”).")
    assert found["fix"] == ("Replace the TXT record at example.com with: "
                            "v=spf1 ip4:198.51.100.0/24 include:_spf.google.com a:mail.example.net -all")


def test_an_spf_include_chain_that_reaches_the_sending_host_passes(published, dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 include:_spf.example.com -all"])
    dns_server.set("_spf.example.com", "TXT", ["v=spf1 mx:example.org redirect=_spf2.example.com"])
    dns_server.set("example.org", "MX", ["10 mx.example.org."])
    dns_server.set("mx.example.org", "A", ["198.51.100.7"])
    dns_server.set("_spf2.example.com", "TXT", ["v=spf1 ip4:93.184.215.0/24 -all"])

    found = results(published)["spf"]

    assert (found["level"], found["detail"]) == (
        "ok", "The SPF record at example.com lets your active backends send (3 of 10 DNS lookups).")


def test_an_esp_include_deep_in_the_chain_counts_and_a_missing_one_is_named(published, dns_server, smtp_backend):
    # given: Amazon SES as well as the relay
    Backend.objects.create(name="SES", kind=Backend.AMAZON_SES, priority=20)
    dns_server.set("example.com", "TXT", ["v=spf1 a:mail.example.net include:_spf.example.com ~all"])
    dns_server.set("_spf.example.com", "TXT", ["v=spf1 include:amazonses.com ~all"])
    dns_server.set("amazonses.com", "TXT", ["v=spf1 ip4:199.255.192.0/22 ~all"])
    assert results(published)["spf"]["level"] == "ok"
    # when Mailgun joins without its include
    Backend.objects.create(name="Mailgun", kind=Backend.MAILGUN, priority=30)
    found = results(published)["spf"]
    # then
    assert found["detail"] == "The SPF record at example.com does not include mailgun.org for Mailgun."
    assert found["fix"] == ("Replace the TXT record at example.com with: "
                            "v=spf1 a:mail.example.net include:_spf.example.com include:mailgun.org ~all")


def test_an_spf_record_past_ten_lookups_is_an_error(published, dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 a:mail.example.net " + " ".join(
        f"include:s{i}.example.com" for i in range(11)) + " ~all"])
    for i in range(11):
        dns_server.set(f"s{i}.example.com", "TXT", ["v=spf1 -all"])

    found = results(published)["spf"]

    assert found["level"] == "error"
    assert found["detail"] == ("The SPF record at example.com cannot be evaluated: the record needs 12 DNS lookups; "
                               "receivers stop at 10.")


def test_an_spf_include_without_a_record_is_an_error(published, dns_server):
    dns_server.set("example.com", "TXT", ["v=spf1 a:mail.example.net include:gone.example.com ~all"])

    found = results(published)["spf"]

    assert found["detail"] == ("The SPF record at example.com cannot be evaluated: gone.example.com, "
                               "included by the record, has no SPF record.")


def test_no_dmarc_record_is_an_error(published, dns_server):
    dns_server.set("_dmarc.example.com", "TXT", [])

    found = results(published)["dmarc"]

    assert found["level"] == "error"
    assert found["detail"] == ("There is no DMARC record at _dmarc.example.com; Gmail and Yahoo reject bulk mail "
                               "without one.")
    assert found["fix"] == ("Publish this TXT record at _dmarc.example.com: "
                            "v=DMARC1; p=none; rua=mailto:dmarc@example.com")


def test_an_unreadable_dmarc_record_is_an_error(published, dns_server):
    dns_server.set("_dmarc.example.com", "TXT", ["v=DMARC1; p=block; rua=mailto:dmarc@example.com"])

    found = results(published)["dmarc"]

    assert found["level"] == "error"
    assert found["detail"] == ("The DMARC record at _dmarc.example.com cannot be read: it must start with v=DMARC1 "
                               "and have p=none, p=quarantine or p=reject.")


def test_dmarc_reports_its_policy_and_warns_without_a_report_address(published, dns_server):
    dns_server.set("_dmarc.example.com", "TXT", ["v=DMARC1; p=quarantine"])

    found = results(published)["dmarc"]

    assert found["level"] == "warning"
    assert found["detail"] == ("The DMARC record at _dmarc.example.com has the policy p=quarantine (failing mail goes "
                               "to spam). It asks for no reports (rua=), so you will not see who sends as your domain.")


def test_a_subdomain_takes_the_dmarc_record_of_its_organizational_domain(dns_server, smtp_backend):
    sending_domain = domains.create_domain("news.example.com")
    dns_server.set("_dmarc.example.com", "TXT", ["v=DMARC1; p=reject; rua=mailto:d@example.com"])

    found = results(sending_domain)["dmarc"]

    assert (found["level"], found["detail"]) == (
        "ok", "The DMARC record at _dmarc.example.com has the policy p=reject (failing mail is refused).")


def test_a_from_domain_that_fails_strict_alignment_is_an_error(published, dns_server, settings):
    # given: mail From a subdomain, DMARC asking for exact domains, bounces on another domain
    settings.BOUNCE_DOMAIN = "bounces.example.net"
    SenderFactory(from_email="news@mail.example.com")
    dns_server.set("_dmarc.example.com", "TXT", ["v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:d@example.com"])
    # when
    found = results(published)["alignment"]
    # then
    assert found["level"] == "error"
    assert found["detail"] == ("Mail From mail.example.com fails DMARC: DKIM signs as example.com and the DMARC record "
                               "asks for the exact domain (adkim=s) and the Return-Path domain is bounces.example.net.")
    assert found["fix"] == "Add mail.example.com as a sending domain of its own, or remove adkim=s from the DMARC record."


def test_relaxed_alignment_accepts_a_subdomain_from_address(published, dns_server):
    SenderFactory(from_email="news@mail.example.com")

    found = results(published)["alignment"]

    assert (found["level"], found["detail"]) == (
        "ok", "Mail From mail.example.com is signed as d=example.com (relaxed alignment), and its Return-Path "
              "domain is example.com.")


def test_esp_backends_are_a_warning_about_their_own_signature(published, dns_server):
    Backend.objects.create(name="SES", kind=Backend.AMAZON_SES, priority=20)
    dns_server.set("example.com", "TXT", ["v=spf1 a:mail.example.net include:amazonses.com ~all"])
    dns_server.set("amazonses.com", "TXT", ["v=spf1 ip4:199.255.192.0/22 ~all"])

    found = results(published)["alignment"]

    assert found["level"] == "warning"
    assert found["fix"] == "Set up domain authentication for example.com at SES."


def test_no_mx_for_the_return_path_domain_is_an_error(published, dns_server):
    dns_server.set("example.com", "MX", [])

    found = results(published)["mx"]

    assert found["level"] == "error"
    assert found["detail"] == ("example.com has no MX record and no address, so receivers cannot send bounces back "
                               "and may refuse the mail.")
    assert found["fix"] == ("Publish an MX record at example.com pointing to the server that receives its mail and "
                            "bounces, e.g. 10 mail.example.com")


def test_a_null_mx_and_an_address_only_return_path(published, dns_server):
    dns_server.set("example.com", "MX", ["0 ."])
    assert results(published)["mx"]["level"] == "error"

    dns_server.set("example.com", "MX", [])
    dns_server.set("example.com", "A", ["93.184.215.14"])
    found = results(published)["mx"]
    assert (found["level"], found["detail"]) == (
        "warning", "example.com has no MX record; senders fall back to its address (93.184.215.14), which some "
                   "receivers do not accept for a Return-Path.")


def test_the_return_path_domain_is_checked_where_it_is_set(published, dns_server):
    published.return_path_domain = "bounce.example.com"
    published.save()
    dns_server.set("bounce.example.com", "MX", ["10 feedback-smtp.eu-west-1.amazonses.com."])
    dns_server.set("bounce.example.com", "TXT", ["v=spf1 a:mail.example.net ~all"])

    found = results(published)

    assert found["mx"]["title"] == "MX for bounce.example.com"
    assert found["mx"]["level"] == "ok"
    assert found["spf"]["detail"].startswith("The SPF record at bounce.example.com lets your active backends send")


def test_a_verified_domain_that_loses_a_record_is_failing(published, dns_server):
    results(published)
    dns_server.set("_dmarc.example.com", "TXT", [])

    results(published)

    published.refresh_from_db()
    assert published.status == SendingDomain.FAILING
    assert published.verified_at is not None


def test_dns_that_does_not_answer_leaves_the_status_as_it_was(published, dns_server):
    # given
    results(published)
    dns_server.servfail("_dmarc.example.com")
    # when
    found = results(published)["dmarc"]
    # then
    assert found["level"] == "warning"
    assert found["temporary"] is True
    assert found["detail"].startswith("DNS did not answer: No DNS server could answer for TXT records of "
                                      "_dmarc.example.com")
    published.refresh_from_db()
    assert published.status == SendingDomain.VERIFIED


def test_a_rotated_key_signs_once_its_record_is_published_and_the_old_one_is_retired(published, dns_server):
    # given
    results(published)
    old = rsa_key(published)
    (new,) = domains.rotate(published)
    assert new.state == DkimKey.NEXT and new.selector != old.selector
    # when the new record is not published yet
    found = results(published)[f"dkim-{new.selector}"]
    # then it waits, without failing the domain
    assert found["level"] == "warning"
    published.refresh_from_db()
    assert published.status == SendingDomain.VERIFIED
    # when it is published
    dns_server.set(new.record_name, "TXT", [new.record_value])
    found = results(published)[f"dkim-{new.selector}"]
    # then
    assert found["detail"] == (f"The DKIM record at {new.record_name} matches the key. This new key signs your mail "
                               "from now on; the old key's record can go in a few days.")
    assert dict(published.keys.values_list("selector", "state")) == {
        old.selector: DkimKey.RETIRED, new.selector: DkimKey.ACTIVE}


def test_the_daily_task_checks_every_domain(published, dns_server):
    from campaigns.tasks import check_sending_domains

    other = domains.create_domain("example.org")

    check_sending_domains()

    assert set(SendingDomain.objects.values_list("domain", "status")) == {
        ("example.com", SendingDomain.VERIFIED), ("example.org", SendingDomain.PENDING)}
    other.refresh_from_db()
    assert other.checked_at is not None
