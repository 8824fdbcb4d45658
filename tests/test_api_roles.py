"""
The role matrix: every API endpoint, called by each member of the cast.

A role below the endpoint's gets 403 and the database does not change; the
role itself and the ones above get through (no 401/403, never a 5xx).
"""

import pytest
from django.db import connection

from autoresponder.roles import ROLES
from campaigns.models import Hook, Layout, Sequence, Step, Template
from lists.models import Segment, Suppression, Tag
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import SubscriptionFactory, UserFactory
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, SMTPBackendFactory

pytestmark = pytest.mark.django_db

CALLERS = {"none": None, "viewer": "viewer", "editor": "editor", "owner": "owner"}


@pytest.fixture
def world(db):
    """One of everything, with the ids the endpoints below use."""
    subscription = SubscriptionFactory(status="unconfirmed")
    sender = SenderFactory()
    layout = Layout.objects.create(name="Base", html="<html><body>{{ content }}</body></html>")
    return {
        "list": subscription.mailing_list.pk, "subscriber": subscription.subscriber.pk,
        "subscription": subscription.pk, "tag": Tag.objects.create(name="vip").pk,
        "segment": Segment.objects.create(name="All gmail", conditions=[
            {"field": "email", "op": "contains", "value": "gmail"}]).pk,
        "suppression": Suppression.objects.create(email="gone@example.org").pk,
        "sender": sender.pk, "layout": layout.pk,
        "template": Template.objects.create(name="T", subject="S", body=BODY).pk,
        "broadcast": BroadcastFactory(sender=sender, lists=[subscription.mailing_list]).pk,
        "backend": SMTPBackendFactory(host="127.0.0.1", port=1).pk, "email": subscription.subscriber.email,
        **_sequence_world(subscription.mailing_list, sender),
    }


def _sequence_world(mailing_list, sender):
    owner = UserFactory(username="hook-owner")
    sequence = Sequence.objects.create(name="Welcome", mailing_list=mailing_list, sender=sender, trigger="api")
    step = Step.objects.create(sequence=sequence, position=1, subject="Hi", body=BODY)
    hook = Hook.objects.create(event="message.sent", target="http://127.0.0.1:9/hook", owner=owner, secret="s")
    return {"sequence": sequence.pk, "step": step.pk, "hook": hook.pk}


def _bodies(w):
    return {
        "list": {"name": "New list"},
        "subscriber": {"email": "new@example.org", "lists": [w["list"]]},
        "subscription": {"list": w["list"], "email": "new@example.org"},
        "bulk": {"list": w["list"], "subscribers": [{"email": "bulk@example.org"}]},
        "segment": {"name": "Seg", "conditions": [{"field": "name", "op": "is_empty"}]},
        "sender": {"name": "S2", "from_name": "Shop", "from_email": "a@shop.example", "postal_address": "1 St"},
        "template": {"name": "T2", "subject": "S", "body": BODY},
        "broadcast": {"name": "B2", "sender": w["sender"], "subject": "S", "body": BODY, "lists": [w["list"]]},
        "backend": {"name": "Out", "kind": "outbox"},
        "new_sequence": {"name": "Second", "mailing_list": w["list"], "sender": w["sender"], "trigger": "api"},
        "new_step": {"sequence": w["sequence"], "subject": "Next", "body": BODY},
        "hook": {"event": "subscriber.created", "target": "http://127.0.0.1:9/new"},
    }


# (method, path, body key or literal, weakest role allowed)
ENDPOINTS = [
    ("get", "/api/v1/lists/", None, "viewer"),
    ("get", "/api/v1/lists/{list}/", None, "viewer"),
    ("post", "/api/v1/lists/", "list", "editor"),
    ("patch", "/api/v1/lists/{list}/", {"name": "Renamed"}, "editor"),
    ("delete", "/api/v1/lists/{list}/", None, "editor"),
    ("get", "/api/v1/subscribers/", None, "viewer"),
    ("get", "/api/v1/subscribers/{subscriber}/", None, "viewer"),
    ("post", "/api/v1/subscribers/", "subscriber", "editor"),
    ("patch", "/api/v1/subscribers/{subscriber}/", {"name": "Renamed"}, "editor"),
    ("delete", "/api/v1/subscribers/{subscriber}/", None, "editor"),
    ("post", "/api/v1/subscribers/{subscriber}/tag/", {"tags": ["new"]}, "editor"),
    ("post", "/api/v1/subscribers/{subscriber}/untag/", {"tags": ["vip"]}, "editor"),
    ("get", "/api/v1/subscribers/{subscriber}/export/", None, "editor"),
    ("post", "/api/v1/subscribers/{subscriber}/wipe/", None, "editor"),
    ("post", "/api/v1/subscribers/bulk/", "bulk", "editor"),
    ("get", "/api/v1/subscriptions/", None, "viewer"),
    ("get", "/api/v1/subscriptions/{subscription}/", None, "viewer"),
    ("post", "/api/v1/subscriptions/", "subscription", "editor"),
    ("post", "/api/v1/subscriptions/{subscription}/confirm/", None, "editor"),
    ("post", "/api/v1/subscriptions/{subscription}/unsubscribe/", {}, "editor"),
    ("get", "/api/v1/tags/", None, "viewer"),
    ("post", "/api/v1/tags/", {"name": "fresh"}, "editor"),
    ("delete", "/api/v1/tags/{tag}/", None, "editor"),
    ("get", "/api/v1/segments/", None, "viewer"),
    ("get", "/api/v1/segments/{segment}/count/", None, "viewer"),
    ("post", "/api/v1/segments/", "segment", "editor"),
    ("patch", "/api/v1/segments/{segment}/", {"name": "Renamed"}, "editor"),
    ("delete", "/api/v1/segments/{segment}/", None, "editor"),
    ("get", "/api/v1/suppressions/", None, "viewer"),
    ("post", "/api/v1/suppressions/", {"email": "x@example.org"}, "editor"),
    ("delete", "/api/v1/suppressions/{suppression}/", None, "editor"),
    ("post", "/api/v1/unsubscribe/", {"email": "{email}"}, "editor"),
    ("get", "/api/v1/senders/", None, "viewer"),
    ("post", "/api/v1/senders/", "sender", "admin"),
    ("patch", "/api/v1/senders/{sender}/", {"name": "Renamed"}, "admin"),
    ("get", "/api/v1/layouts/{layout}/", None, "viewer"),
    ("patch", "/api/v1/layouts/{layout}/", {"name": "Renamed"}, "editor"),
    ("delete", "/api/v1/layouts/{layout}/", None, "editor"),
    ("get", "/api/v1/templates/", None, "viewer"),
    ("post", "/api/v1/templates/", "template", "editor"),
    ("delete", "/api/v1/templates/{template}/", None, "editor"),
    ("get", "/api/v1/broadcasts/", None, "viewer"),
    ("get", "/api/v1/broadcasts/{broadcast}/statistics/", None, "viewer"),
    ("post", "/api/v1/broadcasts/", "broadcast", "editor"),
    ("patch", "/api/v1/broadcasts/{broadcast}/", {"subject": "New"}, "editor"),
    ("post", "/api/v1/broadcasts/{broadcast}/schedule/", {"scheduled_at": "2099-01-01T09:00:00+00:00"}, "editor"),
    ("post", "/api/v1/broadcasts/{broadcast}/cancel/", None, "editor"),
    ("delete", "/api/v1/broadcasts/{broadcast}/", None, "editor"),
    ("get", "/api/v1/backends/", None, "viewer"),
    ("get", "/api/v1/backends/{backend}/", None, "viewer"),
    ("post", "/api/v1/backends/", "backend", "admin"),
    ("patch", "/api/v1/backends/{backend}/", {"priority": 1}, "admin"),
    ("post", "/api/v1/backends/{backend}/test/", None, "admin"),
    ("delete", "/api/v1/backends/{backend}/", None, "admin"),
    ("get", "/api/v1/sequences/", None, "viewer"),
    ("get", "/api/v1/sequences/{sequence}/enrollments/", None, "viewer"),
    ("post", "/api/v1/sequences/", "new_sequence", "editor"),
    ("patch", "/api/v1/sequences/{sequence}/", {"name": "Renamed"}, "editor"),
    ("post", "/api/v1/sequences/{sequence}/enable/", {}, "editor"),
    ("post", "/api/v1/sequences/{sequence}/pause/", {}, "editor"),
    ("post", "/api/v1/sequences/{sequence}/enroll/", {"email": "{email}"}, "editor"),
    ("post", "/api/v1/sequences/{sequence}/remove/", {"email": "{email}"}, "editor"),
    ("delete", "/api/v1/sequences/{sequence}/", None, "editor"),
    ("get", "/api/v1/steps/", None, "viewer"),
    ("post", "/api/v1/steps/", "new_step", "editor"),
    ("patch", "/api/v1/steps/{step}/", {"subject": "New"}, "editor"),
    ("post", "/api/v1/steps/{step}/move/", {"position": 1}, "editor"),
    ("post", "/api/v1/steps/{step}/state/", {"is_active": False}, "editor"),
    ("delete", "/api/v1/steps/{step}/", None, "editor"),
    ("get", "/api/v1/hooks/", None, "admin"),
    ("get", "/api/v1/hooks/{hook}/deliveries/", None, "admin"),
    ("post", "/api/v1/hooks/", "hook", "admin"),
    ("patch", "/api/v1/hooks/{hook}/", {"is_active": False}, "admin"),
    ("delete", "/api/v1/hooks/{hook}/", None, "admin"),
]


def _fingerprint():
    """Every row of the tables the API writes, as text: any change shows."""
    tables = ["lists_mailinglist", "lists_subscriber", "lists_subscription", "lists_tag", "lists_segment",
              "lists_suppression", "lists_subscriber_tags", "lists_importjob", "campaigns_senderidentity",
              "campaigns_layout", "campaigns_template", "campaigns_broadcast", "campaigns_backend",
              "campaigns_sequence", "campaigns_step", "campaigns_enrollment", "campaigns_hook",
              "campaigns_hookdelivery"]
    with connection.cursor() as cursor:
        found = {}
        for table in tables:
            cursor.execute(f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM {table} t")
            found[table] = cursor.fetchone()[0]
    return found


def _allowed(caller, needed):
    return caller != "none" and ROLES.index(caller) >= ROLES.index(needed)


def _call(client, method, path, body, world):
    path = path.format(**world)
    if isinstance(body, str):
        body = _bodies(world)[body]
    elif isinstance(body, dict):
        body = {k: (v.format(**world) if isinstance(v, str) else v) for k, v in body.items()}
    return getattr(client, method)(path, body, format="json")


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("method, path, body, needed", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_role_matrix(request, world, caller, method, path, body, needed):
    client = request.getfixturevalue(ROLE_CLIENTS[caller])
    before = _fingerprint()

    response = _call(client, method, path, body, world)

    if _allowed(caller, needed):
        assert response.status_code not in (401, 403), response.content
        assert response.status_code < 500
    else:
        assert response.status_code == 403, response.content
        assert _fingerprint() == before


def test_session_writes_need_the_csrf_token(bob, client_class, world):
    browser = client_class(enforce_csrf_checks=True)
    browser.force_login(bob)

    response = browser.post("/api/v1/tags/", {"name": "from-a-form"}, content_type="application/json")

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
    assert not Tag.objects.filter(name="from-a-form").exists()


def test_session_reads_work_in_the_browser(bob_client, world):
    assert bob_client.get("/api/v1/lists/").status_code == 200

