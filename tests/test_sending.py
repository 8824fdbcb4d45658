"""The delivery pipeline against real Postgres and a real SMTP server on loopback."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import broadcasts, ledger, sending
from campaigns.models import Backend, Broadcast, Message
from lists.models import Subscriber, Subscription, Suppression
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BroadcastFactory, audience, backend_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(name="Newsletter")


@pytest.fixture
def started(newsletter):
    """A broadcast to the newsletter, moved to sending with its ledger written."""

    def start(count=3, **fields):
        audience(newsletter, count)
        broadcast = BroadcastFactory(lists=[newsletter], **fields)
        Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING, started_at=timezone.now())
        broadcast.refresh_from_db()
        ledger.fan_out(broadcast, send_at=timezone.now())
        return broadcast

    return start


def statuses(broadcast):
    return sorted(broadcast.messages.values_list("email", "status"))


def test_send_batch_delivers_every_message_and_records_it(smtp_server, started):
    # given
    backend = backend_for(smtp_server)
    broadcast = started(3)
    # when
    result = sending.send_batch(broadcast.pk)
    # then
    assert result.counts["sent"] == 3
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "reader0@example.org", "reader1@example.org", "reader2@example.org"
    ]
    rows = list(broadcast.messages.order_by("pk"))
    assert [r.status for r in rows] == ["sent"] * 3
    assert [r.attempts for r in rows] == [1, 1, 1]
    assert all(r.backend_id == backend.pk and r.sent_at and r.leased_by == "" for r in rows)
    assert rows[0].last_response.startswith("250 ")
    broadcast.refresh_from_db()
    assert broadcast.sent_count == 3
