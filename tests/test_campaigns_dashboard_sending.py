"""Dashboard: sending backends (write-only secrets, test connection, health, quota), sender identities, overview."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from campaigns.models import Backend, Broadcast, Message, SenderIdentity
from tests.factories import SubscriberFactory
from tests.sending_factories import BroadcastFactory, SenderFactory, SMTPBackendFactory, backend_for

pytestmark = pytest.mark.django_db

SECRET = "s3cret-Pa55word-never-shown"
INDEX = reverse("campaigns:backend_index")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The cast's accounts are created per test; PBKDF2 would dominate the run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def smtp_post(**overrides):
    data = {
        "name": "Relay", "is_active": "on", "priority": "10", "host": "mail.alice.example", "port": "587",
        "security": "starttls", "username": "alice", "password": SECRET, "rate_per_second": "5",
        "window_limit": "50000", "window_seconds": "86400", "price_per_thousand": "0.10",
        "retry_schedule": "1m 5m 15m", "give_up_hours": "48",
    }
    data.update(overrides)
    return data


def create_smtp(client, **overrides):
    return client.post(reverse("campaigns:backend_create", args=["smtp"]), smtp_post(**overrides))


# --- Role matrix ----------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(INDEX)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_mallory_is_refused_every_sending_page(mallory_client):
    backend = SMTPBackendFactory()
    for url in (INDEX, reverse("campaigns:backend_detail", args=[backend.pk]), reverse("settings")):
        assert mallory_client.get(url).status_code == 403


def test_victor_reads_backends_but_sees_no_manage_buttons(victor_client):
    backend = SMTPBackendFactory(name="Relay")
    response = victor_client.get(INDEX)
    assert response.status_code == 200
    assert "Relay" in response.text
    assert reverse("campaigns:backend_kind") not in response.text
    detail = victor_client.get(reverse("campaigns:backend_detail", args=[backend.pk]))
    assert detail.status_code == 200
    assert "Test connection" not in detail.text


@pytest.mark.parametrize("who", ["victor_client", "bob_client"])
def test_viewers_and_editors_cannot_change_backends(request, who):
    client = request.getfixturevalue(who)
    backend = SMTPBackendFactory(name="Relay", host="old.example", is_active=True)

    assert create_smtp(client, name="Sneaky").status_code == 403
    assert client.post(reverse("campaigns:backend_edit", args=[backend.pk]), smtp_post(host="evil.example")).status_code == 403
    assert client.post(reverse("campaigns:backend_toggle", args=[backend.pk])).status_code == 403
    assert client.post(reverse("campaigns:backend_delete", args=[backend.pk])).status_code == 403
    assert client.post(reverse("campaigns:backend_test", args=[backend.pk])).status_code == 403

    backend.refresh_from_db()
    assert (backend.host, backend.is_active) == ("old.example", True)
    assert list(Backend.objects.values_list("name", flat=True)) == ["Relay"]


# --- Create and edit, secrets write-only ------------------------------------------------------


def test_alice_adds_an_smtp_backend(alice_client):
    response = create_smtp(alice_client)

    backend = Backend.objects.get(name="Relay")
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:backend_detail", args=[backend.pk])
    assert (backend.kind, backend.host, backend.port, backend.security) == ("smtp", "mail.alice.example", 587, "starttls")
    assert (backend.username, backend.password) == ("alice", SECRET)
    assert backend.window_limit == 50000 and backend.give_up_after == timedelta(hours=48)


def test_the_saved_password_never_appears_in_any_page(alice_client):
    create_smtp(alice_client)
    backend = Backend.objects.get(name="Relay")
    pages = [INDEX, reverse("campaigns:backend_detail", args=[backend.pk]),
             reverse("campaigns:backend_edit", args=[backend.pk])]
    for url in pages:
        response = alice_client.get(url)
        assert response.status_code == 200
        assert SECRET not in response.text
    # nor when the edit form comes back with an error
    response = alice_client.post(reverse("campaigns:backend_edit", args=[backend.pk]),
                                 smtp_post(host="", password=""))
    assert response.status_code == 200
    assert "SMTP backend needs the server" in response.text
    assert SECRET not in response.text
    assert "•••• saved — leave empty to keep" in alice_client.get(reverse("campaigns:backend_edit", args=[backend.pk])).text


def test_a_password_typed_with_a_form_error_is_not_echoed_back(alice_client):
    response = create_smtp(alice_client, host="")
    assert response.status_code == 200
    assert SECRET not in response.text
    assert not Backend.objects.exists()


def test_saving_an_empty_password_keeps_the_old_one(alice_client):
    create_smtp(alice_client)
    backend = Backend.objects.get(name="Relay")

    alice_client.post(reverse("campaigns:backend_edit", args=[backend.pk]), smtp_post(password="", priority="20"))

    backend.refresh_from_db()
    assert (backend.password, backend.priority) == (SECRET, 20)


def test_a_new_password_replaces_the_old_and_the_remove_box_clears_it(alice_client):
    create_smtp(alice_client)
    backend = Backend.objects.get(name="Relay")
    edit = reverse("campaigns:backend_edit", args=[backend.pk])

    alice_client.post(edit, smtp_post(password="another-one"))
    backend.refresh_from_db()
    assert backend.password == "another-one"

    alice_client.post(edit, smtp_post(password="", clear_password="on"))
    backend.refresh_from_db()
    assert backend.password == ""


def test_secrets_are_encrypted_in_the_database(alice_client):
    from django.db import connection

    create_smtp(alice_client)
    with connection.cursor() as cursor:
        cursor.execute("SELECT password FROM campaigns_backend WHERE name = 'Relay'")
        stored = cursor.fetchone()[0]
    assert stored.startswith("fernet:") and SECRET not in stored


def test_an_esp_backend_asks_for_its_api_key(alice_client):
    url = reverse("campaigns:backend_create", args=["sendgrid"])
    base = {"name": "SendGrid", "is_active": "on", "priority": "5", "rate_per_second": "0", "window_limit": "0",
            "window_seconds": "86400", "price_per_thousand": "0.80", "retry_schedule": "1m 5m", "give_up_hours": "24"}

    refused = alice_client.post(url, base)
    assert refused.status_code == 200
    assert "Enter the api key from your ESP account." in refused.text
    assert not Backend.objects.exists()

    alice_client.post(url, {**base, "api_key": "SG.key-value"})
    backend = Backend.objects.get(name="SendGrid")
    assert (backend.kind, backend.api_key, backend.host) == ("sendgrid", "SG.key-value", "")


def test_mailgun_options_are_stored_with_the_backend(alice_client):
    url = reverse("campaigns:backend_create", args=["mailgun"])
    alice_client.post(url, {
        "name": "Mailgun EU", "priority": "5", "rate_per_second": "0", "window_limit": "0", "window_seconds": "86400",
        "price_per_thousand": "0.80", "retry_schedule": "1m", "give_up_hours": "24", "api_key": "key-1",
        "sender_domain": "mg.alice.example", "api_url": "https://api.eu.mailgun.net/v3",
    })
    backend = Backend.objects.get(name="Mailgun EU")
    assert backend.esp_options == {"sender_domain": "mg.alice.example", "api_url": "https://api.eu.mailgun.net/v3"}
    assert backend.is_active is False  # the box was not ticked


def test_amazon_ses_needs_both_keys_or_neither(alice_client):
    url = reverse("campaigns:backend_create", args=["amazon_ses"])
    base = {"name": "SES", "priority": "5", "rate_per_second": "14", "window_limit": "50000", "window_seconds": "86400",
            "price_per_thousand": "0.10", "retry_schedule": "1m", "give_up_hours": "24", "region": "eu-west-1"}
    response = alice_client.post(url, {**base, "api_key": "AKIAEXAMPLE"})
    assert "Give both the access key ID and the secret access key, or neither." in response.text
    alice_client.post(url, base)
    assert Backend.objects.get(name="SES").esp_options == {"region": "eu-west-1"}


def test_line_breaks_in_the_host_are_refused(alice_client):
    response = create_smtp(alice_client, host="mail.example\r\nRCPT TO:<x@evil.example>")
    assert response.status_code == 200
    assert "cannot contain line breaks" in response.text
    assert not Backend.objects.exists()


def test_an_unknown_kind_is_not_found(alice_client):
    assert alice_client.get(reverse("campaigns:backend_create", args=["carrier-pigeon"])).status_code == 404


def test_a_generated_dkim_key_is_stored_and_its_dns_record_shown_never_the_key(alice_client):
    create_smtp(alice_client, dkim_domain="alice.example", dkim_selector="s2030", dkim_generate="ed25519")
    backend = Backend.objects.get(name="Relay")
    assert backend.has_dkim and "PRIVATE KEY" in backend.dkim_private_key

    detail = alice_client.get(reverse("campaigns:backend_detail", args=[backend.pk]))
    assert "s2030._domainkey.alice.example" in detail.text
    assert "v=DKIM1; k=ed25519; p=" in detail.text
    key_body = backend.dkim_private_key.splitlines()[1]
    for url in (reverse("campaigns:backend_detail", args=[backend.pk]), reverse("campaigns:backend_edit", args=[backend.pk])):
        assert key_body not in alice_client.get(url).text


def test_a_dkim_key_that_is_not_pem_is_refused(alice_client):
    response = create_smtp(alice_client, dkim_domain="alice.example", dkim_selector="s1", dkim_private_key="not a key")
    assert "The DKIM private key is not a valid unencrypted PEM key." in response.text
    assert not Backend.objects.exists()


# --- Test connection, enable, delete ----------------------------------------------------------


def test_test_connection_reaches_the_smtp_server_and_answers_inline(alice_client, smtp_server):
    backend = backend_for(smtp_server)
    response = alice_client.post(reverse("campaigns:backend_test", args=[backend.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert f"Connected to 127.0.0.1:{smtp_server.port}." in response.text
    assert 'class="callout ok"' in response.text
    assert smtp_server.messages == []  # nothing was sent


def test_test_connection_reports_an_unreachable_server(alice_client):
    from tests.smtp import free_port

    backend = SMTPBackendFactory(host="127.0.0.1", port=free_port())
    response = alice_client.post(reverse("campaigns:backend_test", args=[backend.pk]), HTTP_HX_REQUEST="true")
    assert "Could not connect: 127.0.0.1:" in response.text
    assert 'class="callout danger"' in response.text


def test_test_connection_without_htmx_redirects_with_a_message(alice_client, smtp_server):
    backend = backend_for(smtp_server)
    response = alice_client.post(reverse("campaigns:backend_test", args=[backend.pk]), follow=True)
    assert f"Connected to 127.0.0.1:{smtp_server.port}." in response.text


def test_alice_disables_and_enables_a_backend(alice_client):
    backend = SMTPBackendFactory(is_active=True)
    alice_client.post(reverse("campaigns:backend_toggle", args=[backend.pk]), {"next": "index"})
    backend.refresh_from_db()
    assert backend.is_active is False
    alice_client.post(reverse("campaigns:backend_toggle", args=[backend.pk]))
    backend.refresh_from_db()
    assert backend.is_active is True


def test_delete_asks_first_then_deletes(alice_client):
    backend = SMTPBackendFactory(name="Old relay")
    confirm = alice_client.get(reverse("campaigns:backend_delete", args=[backend.pk]))
    assert "Delete the backend “Old relay”?" in confirm.text
    assert Backend.objects.filter(pk=backend.pk).exists()

    response = alice_client.post(reverse("campaigns:backend_delete", args=[backend.pk]))
    assert response["Location"] == INDEX
    assert not Backend.objects.filter(pk=backend.pk).exists()


# --- Health and quota -------------------------------------------------------------------------


def sent_message(backend, *, ago):
    broadcast = BroadcastFactory(status=Broadcast.SENT)
    when = timezone.now() - ago
    return Message.objects.create(
        broadcast=broadcast, subscriber=SubscriberFactory(), email="x@example.org", status=Message.SENT,
        next_attempt_at=when, sent_at=when, backend=backend,
    )


def test_index_shows_quota_used_in_the_window_and_health(victor_client):
    backend = SMTPBackendFactory(name="Relay", window_limit=100, window_seconds=86400,
                                 last_error="421 try later", last_error_at=timezone.now())
    sent_message(backend, ago=timedelta(hours=1))
    sent_message(backend, ago=timedelta(hours=2))
    sent_message(backend, ago=timedelta(hours=30))  # outside the 24 h window

    response = victor_client.get(INDEX)
    assert "2 of 100 in 24 h" in response.text
    assert "Last attempt failed" in response.text


def test_detail_lists_recent_errors(victor_client):
    backend = SMTPBackendFactory(name="Relay")
    message = sent_message(backend, ago=timedelta(minutes=5))
    Message.objects.filter(pk=message.pk).update(status=Message.FAILED, last_response="550 5.7.1 Refused by policy")
    response = victor_client.get(reverse("campaigns:backend_detail", args=[backend.pk]))
    assert "550 5.7.1 Refused by policy" in response.text


# --- Sender identities (settings) --------------------------------------------------------------

SENDER = {"name": "Newsletter", "from_name": "Alice's Shop", "from_email": "news@alice.example",
          "reply_to": "help@alice.example", "postal_address": "1 Market Street\nSpringfield"}


def test_alice_adds_and_edits_a_sender(alice_client):
    response = alice_client.post(reverse("campaigns:sender_create"), SENDER)
    assert response["Location"] == reverse("settings")
    sender = SenderIdentity.objects.get(name="Newsletter")
    assert (sender.from_email, sender.postal_address) == ("news@alice.example", "1 Market Street\nSpringfield")

    alice_client.post(reverse("campaigns:sender_edit", args=[sender.pk]), {**SENDER, "from_name": "Alice"})
    sender.refresh_from_db()
    assert sender.from_name == "Alice"
    assert "Alice &lt;news@alice.example&gt;" in alice_client.get(reverse("settings")).text


@pytest.mark.parametrize("field,value,error", [
    ("from_name", "Alice\r\nBcc: everyone@example.org", "cannot contain line breaks"),
    ("from_email", "not-an-address", "Enter a valid email address."),
    ("reply_to", "help@alice.example\nBcc: x@evil.example", "Enter a valid email address."),
    ("postal_address", "   ", "Enter the postal address printed in every footer."),
])
def test_sender_fields_are_validated(alice_client, field, value, error):
    response = alice_client.post(reverse("campaigns:sender_create"), {**SENDER, field: value})
    assert response.status_code == 200
    assert error in response.text
    assert not SenderIdentity.objects.exists()


@pytest.mark.parametrize("who", ["victor_client", "bob_client"])
def test_only_admins_manage_senders(request, who):
    client = request.getfixturevalue(who)
    sender = SenderFactory(from_name="Alice's Shop")
    assert client.get(reverse("settings")).status_code == 200
    assert client.post(reverse("campaigns:sender_create"), SENDER).status_code == 403
    assert client.post(reverse("campaigns:sender_edit", args=[sender.pk]), {**SENDER, "from_name": "X"}).status_code == 403
    assert client.post(reverse("campaigns:sender_delete", args=[sender.pk])).status_code == 403
    sender.refresh_from_db()
    assert sender.from_name == "Alice's Shop"
    assert SenderIdentity.objects.count() == 1


def test_a_sender_in_use_is_kept(alice_client):
    broadcast = BroadcastFactory()
    response = alice_client.post(reverse("campaigns:sender_delete", args=[broadcast.sender_id]))
    assert response.status_code == 200
    assert "Alice&#x27;s Shop &lt;news@alice.example&gt; is the sender of 1 broadcast, so it stays." in response.text
    assert SenderIdentity.objects.filter(pk=broadcast.sender_id).exists()


def test_an_unused_sender_is_deleted(alice_client):
    sender = SenderFactory()
    alice_client.post(reverse("campaigns:sender_delete", args=[sender.pk]))
    assert not SenderIdentity.objects.exists()


def test_navigation_shows_settings_and_sending_to_everyone_but_only_admins_manage_them(alice_client, victor_client):
    # Viewers read Sending and Settings (navigation since 634705f); only admins get the buttons that change them.
    assert 'href="/settings/"' in alice_client.get(reverse("home")).text
    assert 'href="/sending/"' in alice_client.get(reverse("home")).text
    assert 'href="/settings/"' in victor_client.get(reverse("home")).text
    assert "Add a sender" in alice_client.get(reverse("settings")).text
    assert "Add a sender" not in victor_client.get(reverse("settings")).text


# --- Overview ------------------------------------------------------------------------------------


def test_overview_shows_sends_against_quota_recent_broadcasts_and_unknown_messages(victor_client):
    backend = SMTPBackendFactory(name="Relay", window_limit=1000)
    sent_message(backend, ago=timedelta(minutes=10))
    BroadcastFactory(name="Spring sale", status=Broadcast.SENDING, recipients_count=10, sent_count=4, unknown_count=2)

    response = victor_client.get(reverse("home"))
    assert "Relay: sent in the last 24 h" in response.text
    assert "Spring sale" in response.text
    assert "2 messages in an unknown state." in response.text


def test_an_admin_manages_backends_and_senders(client_class):
    from autoresponder.roles import grant
    from tests.factories import UserFactory

    # given: someone with exactly the admin role (not an owner)
    ada = UserFactory(username="ada")
    grant(ada, "admin")
    client = client_class()
    client.force_login(ada)

    assert create_smtp(client).status_code == 302
    assert client.post(reverse("campaigns:sender_create"), SENDER).status_code == 302
    assert Backend.objects.get(name="Relay").password == SECRET
    assert SenderIdentity.objects.get(name="Newsletter").from_email == "news@alice.example"
