"""Factories and helpers for the sending tests (backends, senders, broadcasts, audiences)."""

import factory

from campaigns.models import Backend, Broadcast, SenderIdentity
from lists.models import Subscriber, Subscription
from tests.factories import MailingListFactory

BODY = (
    "<html><head><style>p { color: #333; }</style></head><body>"
    "<p>Hello {{ subscriber.first_name | default: 'friend' }},</p>"
    '<p>Read <a href="https://shop.example/spring?id={{ subscriber.email }}">our spring sale</a> '
    'and <a href="https://shop.example/blog">the blog</a>.</p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> · {{ sender.postal_address }}</p>'
    "</body></html>"
)


class SenderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = SenderIdentity

    name = factory.Sequence(lambda n: f"Sender {n}")
    from_name = "Alice's Shop"
    from_email = "news@alice.example"
    reply_to = "help@alice.example"
    postal_address = "1 Market Street, Springfield"


class SMTPBackendFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Backend

    name = factory.Sequence(lambda n: f"SMTP {n}")
    kind = Backend.SMTP
    host = "127.0.0.1"
    port = 25
    security = Backend.NONE
    priority = 10
    retry_schedule = "1m 5m 15m 30m 1h"


class BroadcastFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Broadcast
        skip_postgeneration_save = True

    name = factory.Sequence(lambda n: f"Spring sale {n}")
    sender = factory.SubFactory(SenderFactory)
    subject = "Spring sale for {{ subscriber.first_name | default: 'you' }}"
    body = BODY

    @factory.post_generation
    def lists(self, create, extracted, **kwargs):
        if create and extracted:
            self.lists.set(extracted)


def backend_for(server, **fields):
    """An SMTP backend pointing at a tests.smtp.SMTPServer."""
    return SMTPBackendFactory(**{"host": server.host, "port": server.port, **fields})


def audience(mailing_list, count, *, prefix="reader", status=Subscription.CONFIRMED):
    """`count` subscribers on `mailing_list`, created with two set-based INSERTs."""
    subscribers = Subscriber.objects.bulk_create(
        Subscriber(email=f"{prefix}{i}@example.org", name=f"Reader{i} Smith") for i in range(count)
    )
    Subscription.objects.bulk_create(
        Subscription(subscriber=s, mailing_list=mailing_list, status=status, source=Subscription.IMPORT)
        for s in subscribers
    )
    return subscribers


__all__ = ["MailingListFactory", "SenderFactory", "SMTPBackendFactory", "BroadcastFactory", "backend_for", "audience"]
