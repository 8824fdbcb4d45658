"""Sending domains: keys, the records to publish, DKIM signing on the SMTP path, the pages and the admin."""

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from campaigns import dkim, domains, ledger, sending
from campaigns.models import Backend, Broadcast, DkimKey, SendingDomain
from tests.dns_server import dns_server, lookup_txt  # noqa: F401
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, SMTPBackendFactory, audience, backend_for

pytestmark = pytest.mark.django_db
YEAR = timezone.localdate().year
INDEX = reverse("campaigns:domain_index")


def publish(dns_server, sending_domain):
    for record in domains.records(sending_domain):
        dns_server.set(record.name, record.type, [record.value])


# --- Keys -------------------------------------------------------------------------------------------


def test_it_creates_an_rsa_2048_key_under_this_years_selector():
    # when
    sending_domain = domains.create_domain(" Example.COM. ", dmarc_rua="dmarc@example.com")
    # then
    (key,) = sending_domain.keys.all()
    assert (sending_domain.domain, sending_domain.status) == ("example.com", SendingDomain.PENDING)
    assert (key.selector, key.algorithm, key.state) == (f"ar{YEAR}", DkimKey.RSA, DkimKey.ACTIVE)
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    assert private.key_size == 2048
    assert key.record_value == f"v=DKIM1; k=rsa; p={key.public_key}"
    assert dkim.Signer("example.com", key.selector, key.private_key)  # a usable key


def test_the_private_key_is_encrypted_at_rest():
    sending_domain = domains.create_domain("example.com")

    with connection.cursor() as cursor:
        cursor.execute("SELECT private_key FROM campaigns_dkimkey WHERE domain_id = %s", [sending_domain.pk])
        stored = cursor.fetchone()[0]

    assert stored.startswith("fernet:")
    assert "PRIVATE KEY" not in stored


def test_an_ed25519_key_gets_its_own_selector():
    sending_domain = domains.create_domain("example.com", ed25519=True)

    assert sorted(sending_domain.keys.values_list("selector", "algorithm", "state")) == [
        (f"ar{YEAR}", "rsa", "active"), (f"ar{YEAR}e", "ed25519", "active")]


def test_selectors_never_repeat_within_a_domain():
    sending_domain = domains.create_domain("example.com")
    today = timezone.localdate()

    selectors = [domains.rotate(sending_domain)[0].selector]
    DkimKey.objects.filter(state=DkimKey.NEXT).update(state=DkimKey.RETIRED)
    selectors.append(domains.rotate(sending_domain)[0].selector)
    DkimKey.objects.filter(state=DkimKey.NEXT).update(state=DkimKey.RETIRED)
    selectors.append(domains.rotate(sending_domain)[0].selector)

    assert selectors == [f"ar{today:%Y%m}", f"ar{today:%Y%m%d}", f"ar{today:%Y%m%d}n2"]


@pytest.mark.parametrize("name, message", [
    ("news@example.com", "Enter the domain only (the part after @), not 'news@example.com'."),
    ("example", "'example' is not a valid domain name; enter one such as example.com."),
    ("exa mple.com", "'exa mple.com' is not a valid domain name; enter one such as example.com."),
    ("co.uk", "co.uk is a public suffix that anyone can register under; enter your own domain."),
])
def test_a_name_that_is_not_a_domain_is_refused(name, message):
    with pytest.raises(ValidationError) as caught:
        domains.create_domain(name)

    assert caught.value.messages == [message]
    assert SendingDomain.objects.count() == 0


def test_a_domain_is_added_once():
    domains.create_domain("example.com")

    with pytest.raises(ValidationError, match="example.com is already a sending domain."):
        domains.create_domain("EXAMPLE.com")


def test_an_international_domain_is_stored_as_its_ascii_form():
    assert domains.create_domain("bücher.example").domain == "xn--bcher-kva.example"


def test_an_active_key_cannot_be_forgotten():
    key = domains.create_domain("example.com").keys.get()

    with pytest.raises(ValidationError):
        domains.forget_key(key)

    assert DkimKey.objects.filter(pk=key.pk).exists()


# --- Records ------------------------------------------------------------------------------------------


def test_records_are_the_dkim_key_an_spf_record_for_the_backends_and_dmarc():
    # given
    SMTPBackendFactory(name="Relay", host="mail.example.net")
    SMTPBackendFactory(name="By address", host="93.184.215.10")
    SMTPBackendFactory(name="IPv6", host="2606:2800:220:1::10")
    for kind in (Backend.AMAZON_SES, Backend.MANDRILL, Backend.SENDGRID, Backend.POSTMARK, Backend.MAILGUN,
                 Backend.BREVO):
        Backend.objects.create(name=kind, kind=kind)
    Backend.objects.create(name="Off", kind=Backend.SMTP, host="old.example.net", is_active=False)
    Backend.objects.create(name="Outbox", kind=Backend.OUTBOX)
    sending_domain = domains.create_domain("example.com", dmarc_rua="dmarc@example.com", ed25519=True)
    rsa, ed = sending_domain.keys.order_by("-algorithm").values_list("public_key", flat=True)
    # when
    found = [(r.purpose, r.type, r.name, r.value) for r in domains.records(sending_domain)]
    # then
    assert found == [
        ("DKIM (Ed25519)", "TXT", f"ar{YEAR}e._domainkey.example.com", f"v=DKIM1; k=ed25519; p={ed}"),
        ("DKIM (RSA)", "TXT", f"ar{YEAR}._domainkey.example.com", f"v=DKIM1; k=rsa; p={rsa}"),
        ("SPF", "TXT", "example.com",  # in the backends' order: priority, then name
         "v=spf1 ip4:93.184.215.10 ip6:2606:2800:220:1::10 a:mail.example.net include:amazonses.com "
         "include:spf.brevo.com include:mailgun.org include:spf.mandrillapp.com include:spf.mtasv.net "
         "include:sendgrid.net ~all"),
        ("DMARC", "TXT", "_dmarc.example.com", "v=DMARC1; p=none; rua=mailto:dmarc@example.com"),
    ]


def test_a_local_relay_gets_a_note_instead_of_a_useless_address(settings):
    settings.BOUNCE_DOMAIN = "bounces.example.com"
    SMTPBackendFactory(name="Postfix", host="127.0.0.1")
    sending_domain = domains.create_domain("example.com")

    spf = domains.spf_record(sending_domain)

    assert (spf.name, spf.value) == ("bounces.example.com", "v=spf1 mx ~all")
    assert spf.note == ("The backend “Postfix” hands mail to 127.0.0.1, on this machine or network: add the public "
                        "address your mail leaves from (ip4:… or ip6:…) to the record.")


def test_without_a_report_address_dmarc_says_how_to_get_reports():
    record = domains.dmarc_record(domains.create_domain("example.com"))

    assert record.value == "v=DMARC1; p=none"
    assert record.note.endswith("Add a DMARC report address to this domain to receive the daily reports.")


# --- Authentication, for the pre-send check -------------------------------------------------------------


def test_is_authenticated_for_a_domain_that_was_never_added():
    assert domains.is_authenticated("example.com") == (
        False, "example.com is not a sending domain: add it under Sending → Domains and publish its DNS records, "
               "so that receivers can tell your mail is really from you.")


def test_is_authenticated_before_the_first_check_and_for_a_subdomain_once_verified():
    sending_domain = domains.create_domain("example.com")
    assert domains.is_authenticated("example.com") == (
        False, "example.com has not been checked yet: publish its DNS records, then check it.")

    SendingDomain.objects.filter(pk=sending_domain.pk).update(status=SendingDomain.VERIFIED, checked_at=timezone.now())

    ok, reason = domains.is_authenticated("News.Example.com")
    assert ok is True
    assert reason.startswith("example.com passed its DKIM, SPF and DMARC checks (last checked ")


# --- Signing -------------------------------------------------------------------------------------------


@pytest.fixture
def broadcast_to_one():
    newsletter = MailingListFactory(name="Newsletter")
    audience(newsletter, 1)
    broadcast = BroadcastFactory(lists=[newsletter])  # From news@alice.example
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
    broadcast.refresh_from_db()
    ledger.fan_out(broadcast, send_at=timezone.now())
    return broadcast


def test_smtp_mail_is_signed_with_the_domains_rsa_and_ed25519_keys(smtp_server, dns_server, broadcast_to_one):
    # given: the backend's own key would sign for another domain
    pem, _txt = dkim.generate_key("ed25519")
    backend_for(smtp_server, dkim_domain="relay.example", dkim_selector="own", dkim_private_key=pem)
    sending_domain = domains.create_domain("alice.example", ed25519=True)
    publish(dns_server, sending_domain)
    # when
    sending.send_batch(broadcast_to_one.pk)
    # then
    raw = smtp_server.messages[0].raw
    signatures = smtp_server.messages[0].message.get_all("DKIM-Signature")
    tags = [dict(p.strip().split("=", 1) for p in s.replace("\r\n", "").split(";") if "=" in p) for s in signatures]
    assert sorted((t["d"], t["s"], t["a"]) for t in tags) == [
        ("alice.example", f"ar{YEAR}", "rsa-sha256"), ("alice.example", f"ar{YEAR}e", "ed25519-sha256")]
    verifier = dkimpy.DKIM(raw)
    assert [verifier.verify(idx=i, dnsfunc=lookup_txt) for i in range(2)] == [True, True]
    assert dns_server.queries.count((f"ar{YEAR}._domainkey.alice.example", "TXT")) == 1


def test_the_signature_fails_against_a_record_with_another_key(smtp_server, dns_server, broadcast_to_one):
    backend_for(smtp_server)
    sending_domain = domains.create_domain("alice.example")
    _pem, other = dkim.generate_key("rsa")
    dns_server.set(f"ar{YEAR}._domainkey.alice.example", "TXT", [other])

    sending.send_batch(broadcast_to_one.pk)

    assert dkimpy.verify(smtp_server.messages[0].raw, dnsfunc=lookup_txt) is False
    assert sending_domain.keys.count() == 1


def test_a_failing_domain_leaves_signing_to_the_backends_own_key(smtp_server, dns_server, broadcast_to_one):
    # given
    pem, txt = dkim.generate_key("rsa")
    backend_for(smtp_server, dkim_domain="alice.example", dkim_selector="own", dkim_private_key=pem)
    sending_domain = domains.create_domain("alice.example")
    SendingDomain.objects.filter(pk=sending_domain.pk).update(status=SendingDomain.FAILING)
    dns_server.set("own._domainkey.alice.example", "TXT", [txt])
    # when
    sending.send_batch(broadcast_to_one.pk)
    # then
    signatures = smtp_server.messages[0].message.get_all("DKIM-Signature")
    assert len(signatures) == 1 and "s=own;" in signatures[0].replace(" ", "")
    assert dkimpy.verify(smtp_server.messages[0].raw, dnsfunc=lookup_txt) is True


def test_esp_mail_is_not_signed_here():
    from campaigns.composing import signers_for

    domains.create_domain("alice.example")
    ses = Backend.objects.create(name="SES", kind=Backend.AMAZON_SES)

    assert signers_for(ses, "news@alice.example") == []
    assert len(signers_for(SMTPBackendFactory(), "news@alice.example")) == 1


# --- Pages -------------------------------------------------------------------------------------------------


def test_mallory_and_anonymous_visitors_are_refused(mallory_client, client):
    sending_domain = domains.create_domain("example.com")
    detail = reverse("campaigns:domain_detail", args=[sending_domain.pk])

    assert mallory_client.get(INDEX).status_code == 403
    assert mallory_client.get(detail).status_code == 403
    assert client.get(INDEX).status_code == 302


def test_victor_reads_the_records_but_cannot_check_or_change(victor_client):
    # given
    sending_domain = domains.create_domain("example.com")
    key = sending_domain.keys.get()
    detail = reverse("campaigns:domain_detail", args=[sending_domain.pk])
    # when
    page = victor_client.get(detail).content.decode()
    # then
    assert key.record_value in page and "PRIVATE KEY" not in page
    assert "Check now" not in page and "Rotate" not in page and "Add a domain" not in victor_client.get(INDEX).content.decode()
    for name in ("domain_check", "domain_rotate", "domain_add_ed25519", "domain_delete"):
        assert victor_client.post(reverse(f"campaigns:{name}", args=[sending_domain.pk])).status_code == 403
    assert victor_client.post(reverse("campaigns:domain_create"), {"domain": "other.com"}).status_code == 403
    assert SendingDomain.objects.count() == 1 and sending_domain.keys.count() == 1


def test_bob_the_editor_checks_but_cannot_add_rotate_or_delete(bob_client, dns_server):
    sending_domain = domains.create_domain("example.com")
    url = reverse("campaigns:domain_check", args=[sending_domain.pk])

    assert bob_client.post(url).status_code == 302
    assert bob_client.post(reverse("campaigns:domain_create"), {"domain": "other.com"}).status_code == 403
    assert bob_client.post(reverse("campaigns:domain_rotate", args=[sending_domain.pk])).status_code == 403
    assert bob_client.post(reverse("campaigns:domain_delete", args=[sending_domain.pk])).status_code == 403
    sending_domain.refresh_from_db()
    assert sending_domain.checked_at is not None
    assert list(SendingDomain.objects.values_list("domain", flat=True)) == ["example.com"]


def test_alice_adds_a_domain_and_sees_the_records_to_publish(alice_client):
    # when
    response = alice_client.post(reverse("campaigns:domain_create"), {
        "domain": "Example.com", "dmarc_rua": "dmarc@example.com", "return_path_domain": "", "ed25519": "on"})
    # then
    sending_domain = SendingDomain.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:domain_detail", args=[sending_domain.pk])
    page = alice_client.get(response["Location"]).content.decode()
    assert "example.com added with a new DKIM key. Publish the records below at your DNS host, then press Check now." in page
    for record in domains.records(sending_domain):
        assert record.name in page and record.value in page
    assert 'data-copy="#value-spf"' in page
    assert "<script>" not in page


def test_a_bad_domain_shows_the_reason_on_the_form(alice_client):
    response = alice_client.post(reverse("campaigns:domain_create"), {"domain": "co.uk"})

    assert response.status_code == 200
    assert "co.uk is a public suffix that anyone can register under; enter your own domain." in response.content.decode()
    assert SendingDomain.objects.count() == 0


def test_check_now_answers_htmx_with_the_results_and_their_fixes(alice_client, dns_server):
    sending_domain = domains.create_domain("example.com")

    response = alice_client.post(reverse("campaigns:domain_check", args=[sending_domain.pk]), HTTP_HX_REQUEST="true")

    page = response.content.decode()
    assert response.status_code == 200
    assert page.startswith('<section class="card" id="domain-checks"')
    assert "There is no DKIM record at" in page and "There is no DMARC record at _dmarc.example.com" in page
    assert "Pending: records not published yet" in page


def test_alice_rotates_the_key_adds_ed25519_and_forgets_the_retired_key(alice_client, dns_server):
    # given
    sending_domain = domains.create_domain("example.com")
    old = sending_domain.keys.get()
    # when
    alice_client.post(reverse("campaigns:domain_rotate", args=[sending_domain.pk]))
    alice_client.post(reverse("campaigns:domain_add_ed25519", args=[sending_domain.pk]))
    publish(dns_server, sending_domain)
    alice_client.post(reverse("campaigns:domain_check", args=[sending_domain.pk]))
    # then
    assert sorted(sending_domain.keys.values_list("algorithm", "state")) == [
        ("ed25519", "active"), ("rsa", "active"), ("rsa", "retired")]
    page = alice_client.get(reverse("campaigns:domain_detail", args=[sending_domain.pk])).content.decode()
    assert "Old keys" in page and old.record_name in page
    # when
    alice_client.post(reverse("campaigns:domain_key_forget", args=[sending_domain.pk, old.pk]))
    # then
    assert not DkimKey.objects.filter(pk=old.pk).exists()


def test_alice_edits_and_deletes_a_domain(alice_client):
    sending_domain = domains.create_domain("example.com")
    edit = reverse("campaigns:domain_edit", args=[sending_domain.pk])

    alice_client.post(edit, {"dmarc_rua": "reports@example.com", "return_path_domain": "Bounce.Example.com"})
    sending_domain.refresh_from_db()
    assert (sending_domain.dmarc_rua, sending_domain.return_path_domain) == ("reports@example.com", "bounce.example.com")

    alice_client.post(reverse("campaigns:domain_delete", args=[sending_domain.pk]))
    assert SendingDomain.objects.count() == 0 and DkimKey.objects.count() == 0


def test_the_navigation_marks_domains_not_sending_as_current(alice_client):
    nav = alice_client.get(INDEX).context["nav"]

    assert [item["label"] for item in nav if item["active"]] == ["Domains"]


# --- Admin -------------------------------------------------------------------------------------------------


@pytest.fixture
def root_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def test_the_admin_lists_domains_and_keys_without_private_keys(root_client):
    sending_domain = domains.create_domain("example.com")
    key = sending_domain.keys.get()

    pages = [root_client.get(url) for url in (
        "/admin/campaigns/sendingdomain/", f"/admin/campaigns/sendingdomain/{sending_domain.pk}/change/",
        "/admin/campaigns/dkimkey/", f"/admin/campaigns/dkimkey/{key.pk}/change/")]

    assert [p.status_code for p in pages] == [200, 200, 200, 200]
    assert all("PRIVATE KEY" not in p.content.decode() for p in pages)
    assert key.record_value in pages[1].content.decode()


def test_the_admin_check_now_action(root_client, dns_server):
    sending_domain = domains.create_domain("example.com")

    response = root_client.post("/admin/campaigns/sendingdomain/", {
        "action": "check_now", "_selected_action": [sending_domain.pk]}, follow=True)

    assert "Example.com: Pending: records not published yet." in response.content.decode()  # the admin capitalises
    sending_domain.refresh_from_db()
    assert sending_domain.checked_at is not None


# --- The pre-send check ---------------------------------------------------------------------------------------


def from_domain_result(broadcast):
    from campaigns import presend

    return [(r.level, r.detail) for r in presend.run(broadcast) if r.title == "From domain authenticated"]


def test_the_pre_send_check_warns_until_the_from_domain_is_verified(dns_server):
    # given
    SMTPBackendFactory(host="mail.example.net")
    broadcast = BroadcastFactory(lists=[MailingListFactory()])  # From news@alice.example
    # then
    assert from_domain_result(broadcast) == [("warning", (
        "alice.example is not a sending domain: add it under Sending → Domains and publish its DNS records, "
        "so that receivers can tell your mail is really from you."))]
    # when
    sending_domain = domains.create_domain("alice.example")
    SendingDomain.objects.filter(pk=sending_domain.pk).update(status=SendingDomain.VERIFIED, checked_at=timezone.now())
    # then
    [(level, detail)] = from_domain_result(broadcast)
    assert level == "ok" and detail.startswith("alice.example passed its DKIM, SPF and DMARC checks")


def test_the_pre_send_check_skips_the_local_outbox():
    Backend.objects.create(name="Outbox", kind=Backend.OUTBOX, priority=1)

    assert from_domain_result(BroadcastFactory(lists=[MailingListFactory()])) == []
