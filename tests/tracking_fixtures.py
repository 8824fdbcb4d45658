"""Helpers for the tracking tests: a broadcast whose messages went out an hour ago."""

from contextlib import contextmanager
from datetime import timedelta

import psycopg2
import pytest
from django.db import connection
from django.utils import timezone

from campaigns import composing, ledger
from campaigns.models import Broadcast, Message
from tests.factories import MailingListFactory
from tests.sending_factories import BroadcastFactory, audience


@pytest.fixture(autouse=True)
def fresh_link_caches():
    """Per-process caches of Link rows outlive each test's rolled-back transaction: empty them."""
    from campaigns import fastpath

    composing._LINKS.clear()
    fastpath._link_urls.clear()


def sent_broadcast(count=3, *, sent_ago=timedelta(hours=1), mailing_list=None, prefix="reader", **list_fields):
    """A broadcast to `count` new subscribers (or, given `mailing_list`, to its confirmed
    subscribers), every message sent `sent_ago` ago; returns its messages."""
    newsletter = mailing_list or MailingListFactory(name="Newsletter", **list_fields)
    if mailing_list is None:
        audience(newsletter, count, prefix=prefix)
    broadcast = BroadcastFactory(lists=[newsletter])
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENDING)
    ledger.fan_out(broadcast, send_at=timezone.now())
    sent_at = timezone.now() - sent_ago
    Message.objects.filter(broadcast=broadcast).update(status=Message.SENT, sent_at=sent_at, attempts=1)
    count = Message.objects.filter(broadcast=broadcast).count()
    Broadcast.objects.filter(pk=broadcast.pk).update(status=Broadcast.SENT, sent_count=count, recipients_count=count)
    return list(Message.objects.filter(broadcast=broadcast).select_related("subscriber", "broadcast").order_by("pk"))


@contextmanager
def events_table_locked():
    """Postgres in trouble: another session holds the events table, and our writes give up
    after 200 ms (a real failure, not a mock)."""
    other = psycopg2.connect(host="127.0.0.1", user="postgres", dbname=connection.settings_dict["NAME"])
    try:
        with other.cursor() as cursor:
            cursor.execute("LOCK TABLE campaigns_event IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '200ms'")
        yield
    finally:
        other.rollback()
        other.close()
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")


def path_of(url):
    """'http://testserver/o/abc.gif' -> '/o/abc.gif'."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def open_path(message):
    return path_of(composing.open_url(message.pk))


def click_path(message, url="https://shop.example/spring"):
    return path_of(composing.click_url(message.pk, composing.link_pk(url)))
