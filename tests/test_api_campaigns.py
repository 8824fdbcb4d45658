"""The campaigns API: senders, layouts, templates, broadcasts (actions, statistics), backends without secrets."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Backend, Broadcast, Layout, Message, SenderIdentity, Template
from tests.api_fixtures import *  # noqa: F401,F403
from tests.sending_factories import BODY, BroadcastFactory, SenderFactory, SMTPBackendFactory, audience
from tests.factories import MailingListFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


# --- Senders, layouts, templates ---------------------------------------------------------------


def test_sender_create_refuses_a_line_break_in_the_from_name(owner_api):
    response = owner_api.post("/api/v1/senders/", {
        "name": "News", "from_name": "Shop\r\nBcc: x@evil.example", "from_email": "news@shop.example",
        "postal_address": "1 Main St"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"from_name": ["This cannot contain line breaks."]}
    assert not SenderIdentity.objects.exists()


def test_sender_write_needs_admin_but_editors_read(editor_api, owner_api):
    sender = SenderFactory()

    assert editor_api.get(f"/api/v1/senders/{sender.pk}/").json()["from_email"] == "news@alice.example"
    assert editor_api.patch(f"/api/v1/senders/{sender.pk}/", {"name": "X"}, format="json").status_code == 403
    assert owner_api.patch(f"/api/v1/senders/{sender.pk}/", {"name": "X"}, format="json").json()["name"] == "X"


def test_sender_in_use_cannot_be_deleted_409(owner_api):
    broadcast = BroadcastFactory()

    response = owner_api.delete(f"/api/v1/senders/{broadcast.sender_id}/")

    assert response.status_code == 409
    assert SenderIdentity.objects.filter(pk=broadcast.sender_id).exists()


def test_template_that_does_not_parse_is_400_with_its_line(editor_api):
    response = editor_api.post("/api/v1/templates/", {
        "name": "Broken", "subject": "Hi", "body": "<p>fine</p>\n<p>{% bogus %}</p>\n"}, format="json")

    assert response.status_code == 400
    assert response.json() == {"body": ["Line 2: unexpected tag 'bogus'"]}
    assert not Template.objects.exists()


def test_template_create_and_patch(editor_api):
    layout = Layout.objects.create(name="Base", html="<html><body>{{ content }}</body></html>")

    created = editor_api.post("/api/v1/templates/", {
        "name": "Welcome", "subject": "Hello {{ subscriber.name }}", "body": BODY, "layout": layout.pk},
        format="json")
    patched = editor_api.patch(f"/api/v1/templates/{created.json()['id']}/", {"subject": "Hi"}, format="json")

    assert created.status_code == 201, created.json()
    assert patched.json()["subject"] == "Hi"
    template = Template.objects.get()
    assert (template.subject, template.body, template.layout_id) == ("Hi", BODY, layout.pk)


def test_layout_needs_exactly_one_content_slot(editor_api):
    response = editor_api.post("/api/v1/layouts/", {"name": "Base", "html": "<html></html>"}, format="json")

    assert response.status_code == 400
    assert "{{ content }}" in response.json()["html"][0]
    assert not Layout.objects.exists()


# --- Broadcasts -----------------------------------------------------------------------------------


def _draft_payload(sender, mailing_list, **extra):
    return {"name": "Spring", "sender": sender.pk, "subject": "Spring sale", "body": BODY,
            "lists": [mailing_list.pk], **extra}


def test_broadcast_create_is_a_draft_made_by_the_service(editor_api, bob):
    sender, mailing_list = SenderFactory(), MailingListFactory()

    response = editor_api.post("/api/v1/broadcasts/", _draft_payload(sender, mailing_list), format="json")

    assert response.status_code == 201, response.json()
    broadcast = Broadcast.objects.get()
    assert (broadcast.status, broadcast.created_by, list(broadcast.lists.all())) == ("draft", bob, [mailing_list])
    assert response.json()["status"] == "draft"


def test_broadcast_without_lists_or_segment_is_400(editor_api):
    response = editor_api.post("/api/v1/broadcasts/", {
        "name": "X", "sender": SenderFactory().pk, "subject": "S", "body": BODY}, format="json")

    assert response.status_code == 400
    assert response.json() == {"lists": ["Choose at least one list or a segment."]}


def test_broadcast_send_twice_sends_once(editor_api, django_capture_on_commit_callbacks):
    SMTPBackendFactory()
    mailing_list = MailingListFactory()
    audience(mailing_list, 3)
    broadcast = BroadcastFactory(lists=[mailing_list])

    first = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/send/")
    second = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/send/")

    assert first.status_code == 200, first.json()
    assert first.json()["status"] == "sending"
    assert second.status_code == 409
    assert second.json() == {"detail": "This broadcast was already started; it is sent once."}


def test_broadcast_send_that_cannot_go_is_400_with_the_reasons(editor_api):
    broadcast = BroadcastFactory(lists=[MailingListFactory()], sender=SenderFactory(postal_address=""))

    response = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/send/")

    assert response.status_code == 400
    assert "The sender has no postal address" in response.json()["non_field_errors"][0]
    broadcast.refresh_from_db()
    assert broadcast.status == "draft"


def test_broadcast_schedule_unschedule_and_edit_only_drafts(editor_api):
    SMTPBackendFactory()
    broadcast = BroadcastFactory(lists=[MailingListFactory()])
    when = (timezone.now() + timedelta(days=1)).replace(microsecond=0)

    scheduled = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/schedule/",
                                {"scheduled_at": when.isoformat()}, format="json")
    edit_while_scheduled = editor_api.patch(f"/api/v1/broadcasts/{broadcast.pk}/", {"subject": "New"}, format="json")
    unscheduled = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/unschedule/")
    edited = editor_api.patch(f"/api/v1/broadcasts/{broadcast.pk}/", {"subject": "New"}, format="json")

    assert scheduled.json()["status"] == "scheduled"
    assert edit_while_scheduled.status_code == 409
    assert unscheduled.json()["status"] == "draft"
    assert edited.status_code == 200 and edited.json()["subject"] == "New"


def test_broadcast_schedule_in_the_past_is_400(editor_api):
    SMTPBackendFactory()
    broadcast = BroadcastFactory(lists=[MailingListFactory()])

    response = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/schedule/",
                               {"scheduled_at": "2001-01-01T09:00:00+00:00"}, format="json")

    assert response.status_code == 400
    broadcast.refresh_from_db()
    assert broadcast.status == "draft"


def test_broadcast_pause_resume_cancel_and_statistics(editor_api):
    # two ledger rows, counted as the fan-out counts them
    broadcast = BroadcastFactory(lists=[MailingListFactory()], status=Broadcast.SENDING, recipients_count=2)
    for n in range(2):
        Message.objects.create(broadcast=broadcast, email=f"{n}@example.org", next_attempt_at=timezone.now())

    paused = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/pause/", {"reason": "Typo"}, format="json")
    paused_again = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/pause/", {}, format="json")
    resumed = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/resume/")
    cancelled = editor_api.post(f"/api/v1/broadcasts/{broadcast.pk}/cancel/")
    statistics = editor_api.get(f"/api/v1/broadcasts/{broadcast.pk}/statistics/")

    assert (paused.json()["status"], paused.json()["pause_reason"]) == ("paused", "Typo")
    assert paused_again.status_code == 409
    assert resumed.json()["status"] == "sending"
    assert cancelled.json()["status"] == "cancelled"
    figures = statistics.json()
    assert (figures["status"], figures["recipients"], figures["cancelled"], figures["recipients_now"]) == (
        "cancelled", 2, 2, None)
    assert set(Message.objects.values_list("status", flat=True)) == {"cancelled"}


def test_broadcast_delete_only_drafts(editor_api):
    draft = BroadcastFactory()
    sent = BroadcastFactory(status=Broadcast.SENT)

    assert editor_api.delete(f"/api/v1/broadcasts/{draft.pk}/").status_code == 204
    assert editor_api.delete(f"/api/v1/broadcasts/{sent.pk}/").status_code == 409
    assert list(Broadcast.objects.values_list("pk", flat=True)) == [sent.pk]


def test_broadcast_filter_by_status(viewer_api):
    BroadcastFactory(name="A")
    BroadcastFactory(name="B", status=Broadcast.SENT)

    response = viewer_api.get("/api/v1/broadcasts/", {"status": "sent"})

    assert [b["name"] for b in response.json()["results"]] == ["B"]


# --- Backends ------------------------------------------------------------------------------------


def test_backend_secrets_are_write_only(owner_api):
    created = owner_api.post("/api/v1/backends/", {
        "name": "Relay", "kind": "smtp", "host": "smtp.example.org", "port": 587, "username": "u",
        "password": "s3cret-Pa55"}, format="json")

    assert created.status_code == 201, created.json()
    body = created.json()
    assert "password" not in body and "s3cret-Pa55" not in str(body)
    assert body["has_password"] is True
    backend = Backend.objects.get()
    assert backend.password == "s3cret-Pa55"
    listed = owner_api.get("/api/v1/backends/").content.decode()
    assert "s3cret-Pa55" not in listed


def test_backend_patch_keeps_a_secret_left_out_and_removes_an_empty_one(owner_api):
    backend = SMTPBackendFactory(password="keep-me", username="u")

    kept = owner_api.patch(f"/api/v1/backends/{backend.pk}/", {"priority": 5}, format="json")
    backend.refresh_from_db()
    assert (kept.status_code, backend.priority, backend.password) == (200, 5, "keep-me")

    removed = owner_api.patch(f"/api/v1/backends/{backend.pk}/", {"password": ""}, format="json")
    backend.refresh_from_db()
    assert (removed.json()["has_password"], backend.password) == (False, "")


def test_backend_esp_needs_its_key_and_keeps_options(owner_api):
    missing = owner_api.post("/api/v1/backends/", {"name": "PM", "kind": "postmark"}, format="json")
    created = owner_api.post("/api/v1/backends/", {
        "name": "PM", "kind": "postmark", "api_key": "token", "esp_options": {"message_stream": "broadcast"}},
        format="json")

    assert missing.status_code == 400 and list(missing.json()) == ["api_key"]
    assert created.status_code == 201, created.json()
    assert created.json()["esp_options"] == {"message_stream": "broadcast"}
    assert Backend.objects.get().esp_options == {"message_stream": "broadcast"}


def test_backend_kind_cannot_change(owner_api):
    backend = SMTPBackendFactory()

    response = owner_api.patch(f"/api/v1/backends/{backend.pk}/", {"kind": "outbox"}, format="json")

    assert response.status_code == 400
    backend.refresh_from_db()
    assert backend.kind == "smtp"


def test_backend_test_connection_reports_failure_plainly(owner_api):
    backend = SMTPBackendFactory(host="127.0.0.1", port=1)

    response = owner_api.post(f"/api/v1/backends/{backend.pk}/test/")

    assert response.status_code == 200
    assert response.json()["ok"] is False


def test_backend_writes_need_admin(editor_api, viewer_api):
    backend = SMTPBackendFactory()

    assert viewer_api.get(f"/api/v1/backends/{backend.pk}/").status_code == 200
    assert editor_api.patch(f"/api/v1/backends/{backend.pk}/", {"priority": 1}, format="json").status_code == 403
    assert editor_api.post(f"/api/v1/backends/{backend.pk}/test/").status_code == 403
    backend.refresh_from_db()
    assert backend.priority == 10


def test_broadcast_statistics_count_recipients_once_a_minute_unless_asked_fresh(editor_api):
    news = MailingListFactory()
    SubscriptionFactory(mailing_list=news)
    draft = BroadcastFactory(lists=[news])

    first = editor_api.get(f"/api/v1/broadcasts/{draft.pk}/statistics/").json()
    SubscriptionFactory(mailing_list=news)
    cached = editor_api.get(f"/api/v1/broadcasts/{draft.pk}/statistics/").json()
    fresh = editor_api.get(f"/api/v1/broadcasts/{draft.pk}/statistics/", {"fresh": "1"}).json()

    assert (first["recipients_now"], cached["recipients_now"], fresh["recipients_now"]) == (1, 1, 2)
    assert cached["recipients_counted_at"] == first["recipients_counted_at"]
    assert fresh["recipients_counted_at"] >= first["recipients_counted_at"]
