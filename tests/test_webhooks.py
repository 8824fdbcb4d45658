"""ESP tracking webhooks: recorded payloads of each ESP posted to anymail's real URLs."""

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

from campaigns import composing, stats
from campaigns.models import Event, Message
from lists.models import Subscription, Suppression
from tests.tracking_fixtures import events_table_locked, fresh_link_caches, sent_broadcast  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning")]

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
SECRET = "hooks:0nly-the-esp-knows"
MAILGUN_KEY = "key-4c1c5e2f6a7b8d9e0f1a2b3c4d5e6f70"
MANDRILL_KEY = "mandrill-webhook-key-KJ8s7d6f5g4h"
MANDRILL_URL = "https://mail.example.com/webhooks/anymail/mandrill/"


@pytest.fixture(autouse=True)
def anymail_settings(settings):
    settings.ANYMAIL = {
        "WEBHOOK_SECRET": SECRET, "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        "MANDRILL_WEBHOOK_KEY": MANDRILL_KEY, "MANDRILL_WEBHOOK_URL": MANDRILL_URL,
    }


@pytest.fixture
def message():
    first = sent_broadcast(2)[0]
    Message.objects.filter(pk=first.pk).update(provider_id="0102018f75c2e6d4-ab12cd34-ef56-7890-a1b2-c3d4e5f6a7b8-000000")
    first.refresh_from_db()
    return first


def payload(name, message, **extra):
    text = (FIXTURES / name).read_text()
    values = {
        "__LEDGER_ID__": str(message.pk), "__RECIPIENT__": message.email, "__PROVIDER_ID__": message.provider_id,
        "__MESSAGE_ID__": composing.message_id_for(message.pk), **extra,
    }
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def auth(secret=SECRET):
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


def post_json(client, esp, body, **headers):
    return client.post(f"/webhooks/anymail/{esp}/tracking/", body, content_type="application/json",
                       **{**auth(), **headers})


def post_ses(client, body, **headers):
    sns = json.loads(body)
    return post_json(client, "amazon_ses", body, HTTP_X_AMZ_SNS_MESSAGE_TYPE=sns["Type"],
                     HTTP_X_AMZ_SNS_MESSAGE_ID=sns["MessageId"], **headers)


def post_mailgun(client, name, message, key=MAILGUN_KEY):
    timestamp, token = str(int(time.time())), hashlib.sha256(name.encode()).hexdigest()[:50]
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    body = payload(name, message, __TIMESTAMP__=timestamp, __TOKEN__=token, __SIGNATURE__=signature)
    return post_json(client, "mailgun", body)


def post_mandrill(client, message, key=MANDRILL_KEY):
    events = payload("mandrill_events.json", message)
    signed = MANDRILL_URL + "mandrill_events" + events
    signature = base64.b64encode(hmac.new(key.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    return client.post("/webhooks/anymail/mandrill/", {"mandrill_events": events},
                       HTTP_X_MANDRILL_SIGNATURE=signature, **auth())


def kinds(message):
    return sorted(Event.objects.filter(message=message).values_list("kind", flat=True))


def suppression(message):
    row = Suppression.objects.filter(email=message.email).first()
    return (row.reason, row.created_at) if row else None


def subscription_status(message):
    return Subscription.objects.get(subscriber=message.subscriber).status


# --- Amazon SES ------------------------------------------------------------------------------------------


def test_ses_permanent_bounce_is_recorded_and_suppresses_the_address(message, client):
    response = post_ses(client, payload("amazon_ses_bounce.json", message))
    assert response.status_code == 200
    assert kinds(message) == ["bounce"]
    event = Event.objects.get(message=message)
    assert event.source == "webhook:Amazon SES"
    assert "550 5.1.1" in event.detail
    assert suppression(message)[0] == "hard_bounce"
    assert stats.broadcast_stats(message.broadcast)["bounced"] == 1


def test_ses_replayed_bounce_changes_nothing(message, client):
    body = payload("amazon_ses_bounce.json", message)
    post_ses(client, body)
    before = (list(Event.objects.values_list("pk", "kind")), suppression(message))
    # when the ESP sends the same notification again
    response = post_ses(client, body)
    # then
    assert response.status_code == 200
    assert (list(Event.objects.values_list("pk", "kind")), suppression(message)) == before
    assert stats.broadcast_stats(message.broadcast)["bounced"] == 1


def test_ses_transient_bounce_is_a_soft_bounce_and_does_not_suppress_yet(message, client):
    post_ses(client, payload("amazon_ses_transient_bounce.json", message))
    assert kinds(message) == ["soft_bounce"]
    assert suppression(message) is None


def test_ses_complaint_unsubscribes_from_everything_and_suppresses(message, client):
    post_ses(client, payload("amazon_ses_complaint.json", message))
    assert kinds(message) == ["complaint"]
    assert subscription_status(message) == "unsubscribed"
    assert suppression(message)[0] == "complaint"


def test_ses_delivery_is_counted(message, client):
    post_ses(client, payload("amazon_ses_delivery.json", message))
    figures = stats.broadcast_stats(message.broadcast)
    assert (figures["delivered"], figures["delivered_is_estimate"]) == (1, False)


def test_webhook_without_the_shared_secret_is_refused_and_changes_nothing(message, client):
    body = payload("amazon_ses_bounce.json", message)
    response = post_ses(client, body, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"hooks:guess").decode())
    assert response.status_code == 400
    response = client.post("/webhooks/anymail/postmark/tracking/", payload("postmark_bounce.json", message),
                           content_type="application/json")
    assert response.status_code == 400
    assert (Event.objects.count(), suppression(message)) == (0, None)


def test_a_receiver_error_answers_500_so_the_esp_retries(message, client, settings):
    # given: the events table is locked by another session (Postgres in trouble)
    client.raise_request_exception = False
    body = payload("postmark_bounce.json", message)
    with events_table_locked():
        response = post_json(client, "postmark", body)
    assert response.status_code == 500
    assert (Event.objects.count(), suppression(message)) == (0, None)
    # when the ESP retries later
    assert post_json(client, "postmark", body).status_code == 200
    assert kinds(message) == ["bounce"]
    assert suppression(message)[0] == "hard_bounce"


# --- Mandrill --------------------------------------------------------------------------------------------


def test_mandrill_batch_records_each_event(message, client):
    response = post_mandrill(client, message)
    assert response.status_code == 200
    assert kinds(message) == ["complaint", "open", "soft_bounce"]
    assert suppression(message)[0] == "complaint"


def test_mandrill_with_a_bad_signature_is_refused(message, client):
    response = post_mandrill(client, message, key="not-the-key")
    assert response.status_code == 400
    assert Event.objects.count() == 0


# --- SendGrid --------------------------------------------------------------------------------------------


def test_sendgrid_events_map_back_through_the_custom_args(message, client):
    response = post_json(client, "sendgrid", payload("sendgrid_events.json", message))
    assert response.status_code == 200
    assert kinds(message) == ["bounce", "complaint", "delivered", "open"]
    assert suppression(message)[0] == "hard_bounce"  # the first of the two reasons stays
    figures = stats.broadcast_stats(message.broadcast)
    assert (figures["delivered"], figures["opens"], figures["unique_opens"], figures["complained"]) == (1, 1, 1, 1)


# --- Postmark --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("postmark_bounce.json", "bounce", "hard_bounce"),
        ("postmark_soft_bounce.json", "soft_bounce", None),
        ("postmark_spam_complaint.json", "complaint", "complaint"),
        ("postmark_delivery.json", "delivered", None),
    ],
)
def test_postmark_events(message, client, name, kind, reason):
    assert post_json(client, "postmark", payload(name, message)).status_code == 200
    assert kinds(message) == [kind]
    assert (suppression(message) or (None,))[0] == reason


def test_an_event_without_our_metadata_is_found_by_the_esps_message_id(message, client):
    body = json.loads(payload("postmark_bounce.json", message))
    del body["Metadata"]
    post_json(client, "postmark", json.dumps(body))
    assert kinds(message) == ["bounce"]


def test_an_event_naming_someone_elses_message_is_not_pinned_on_it(message, client):
    body = json.loads(payload("postmark_bounce.json", message))
    body["Email"] = "stranger@example.net"
    post_json(client, "postmark", json.dumps(body))
    assert kinds(message) == []
    assert suppression(message) is None
    assert Suppression.objects.get(email="stranger@example.net").reason == "hard_bounce"


# --- Mailgun ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind"),
    [("mailgun_failed_permanent.json", "bounce"), ("mailgun_complained.json", "complaint"),
     ("mailgun_delivered.json", "delivered")],
)
def test_mailgun_signed_events(message, client, name, kind):
    assert post_mailgun(client, name, message).status_code == 200
    assert kinds(message) == [kind]


def test_mailgun_with_a_bad_signature_is_refused(message, client):
    assert post_mailgun(client, "mailgun_failed_permanent.json", message, key="key-wrong").status_code == 400
    assert (Event.objects.count(), suppression(message)) == (0, None)


# --- Brevo -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "reason"),
    [
        ("brevo_hard_bounce.json", "bounce", "hard_bounce"),
        ("brevo_soft_bounce.json", "soft_bounce", None),
        ("brevo_spam.json", "complaint", "complaint"),
        ("brevo_delivered.json", "delivered", None),
    ],
)
def test_brevo_events(message, client, name, kind, reason):
    assert post_json(client, "brevo", payload(name, message)).status_code == 200
    assert kinds(message) == [kind]
    assert (suppression(message) or (None,))[0] == reason


def test_brevo_replay_without_an_event_id_is_recognised_by_its_payload(message, client):
    body = payload("brevo_soft_bounce.json", message)
    post_json(client, "brevo", body)
    post_json(client, "brevo", body)
    assert kinds(message) == ["soft_bounce"]
