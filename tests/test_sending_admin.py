"""The Django admin for sending: write-only secrets and the actions."""

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from campaigns import ledger
from campaigns.models import Backend, Broadcast, Message
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(user)
    return client


def backend_post(backend, **changes):
    data = {
        "name": backend.name, "kind": backend.kind, "is_active": "on", "priority": backend.priority,
        "host": backend.host, "port": backend.port or "", "security": backend.security, "username": "",
        "password": "", "api_key": "", "api_secret": "", "dkim_private_key": "", "esp_options": "{}",
        "dkim_domain": "", "dkim_selector": "", "rate_per_second": 0, "window_limit": 0, "window_seconds": 86400,
        "price_per_thousand": "0", "retry_schedule": backend.retry_schedule, "give_up_after": "2 00:00:00",
    }
    data.update(changes)
    return data


def test_backend_secret_is_never_shown_and_empty_keeps_it(admin_client, smtp_server):
    # given
    backend = backend_for(smtp_server, password="s3cret-pass")
    url = f"/admin/campaigns/backend/{backend.pk}/change/"
    # when
    page = admin_client.get(url).content.decode()
    response = admin_client.post(url, backend_post(backend, priority=5))
    # then
    assert "s3cret-pass" not in page and "Saved. Leave empty to keep it." in page
    assert response.status_code == 302
    backend.refresh_from_db()
    assert (backend.priority, backend.password) == (5, "s3cret-pass")


def test_backend_secret_can_be_replaced(admin_client, smtp_server):
    backend = backend_for(smtp_server, password="old")
    admin_client.post(f"/admin/campaigns/backend/{backend.pk}/change/", backend_post(backend, password="new"))
    backend.refresh_from_db()
    assert backend.password == "new"


def test_backend_test_connection_action(admin_client, smtp_server):
    backend = backend_for(smtp_server)
    response = admin_client.post("/admin/campaigns/backend/", {"action": "check_connection",
                                                                "_selected_action": [backend.pk]}, follow=True)
    assert f"{backend}: Connected to 127.0.0.1:{smtp_server.port}." in response.content.decode()


def test_message_retry_action_requeues_failed(admin_client):
    newsletter = MailingListFactory()
    audience(newsletter, 2)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENT)
    ledger.fan_out(broadcast, send_at=timezone.now())
    failed, sent = broadcast.messages.order_by("pk")
    Message.objects.filter(pk=failed.pk).update(status=Message.FAILED)
    Message.objects.filter(pk=sent.pk).update(status=Message.SENT)
    admin_client.post("/admin/campaigns/message/", {"action": "retry", "_selected_action": [failed.pk, sent.pk]})
    assert sorted(broadcast.messages.values_list("status", flat=True)) == ["queued", "sent"]
    assert Broadcast.objects.get(pk=broadcast.pk).status == "sending"


def test_broadcast_pause_action(admin_client):
    broadcast = BroadcastFactory()
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING)
    admin_client.post("/admin/campaigns/broadcast/", {"action": "pause", "_selected_action": [broadcast.pk]})
    broadcast.refresh_from_db()
    assert (broadcast.status, broadcast.pause_reason) == ("paused", "Paused by root")


@pytest.mark.parametrize("model", ["backend", "senderidentity", "layout", "template", "broadcast", "message", "link"])
def test_every_campaigns_admin_list_opens(admin_client, model):
    assert admin_client.get(f"/admin/campaigns/{model}/").status_code == 200


def test_backend_kind_list_is_complete():
    assert {k for k, _ in Backend.KIND_CHOICES} >= {
        "smtp", "outbox", "amazon_ses", "mandrill", "sendgrid", "postmark", "mailgun", "brevo"
    }
