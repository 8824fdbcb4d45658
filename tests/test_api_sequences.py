"""Sequences in the API: build with steps, switch on, pause/resume, enroll and remove a subscriber."""

import pytest

from campaigns.models import Enrollment, Sequence, Step
from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import MailingListFactory, SubscriptionFactory
from tests.sending_factories import BODY, SenderFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def draft(editor_api):
    """A sequence made through the API, with its list and sender."""
    mailing_list, sender = MailingListFactory(), SenderFactory()
    response = editor_api.post("/api/v1/sequences/", {
        "name": "Welcome", "mailing_list": mailing_list.pk, "sender": sender.pk, "trigger": "api"}, format="json")
    assert response.status_code == 201, response.json()
    return Sequence.objects.get(pk=response.json()["id"])


def _step(api, sequence, **fields):
    return api.post("/api/v1/steps/", {"sequence": sequence.pk, "subject": "Hello", "body": BODY, **fields},
                    format="json")


def test_create_sequence_is_a_draft_made_by_the_service(draft, bob):
    assert (draft.status, draft.trigger, draft.created_by) == ("draft", "api", bob)


def test_sequence_with_a_tag_trigger_needs_the_tag(editor_api):
    response = editor_api.post("/api/v1/sequences/", {
        "name": "Tagged", "mailing_list": MailingListFactory().pk, "sender": SenderFactory().pk, "trigger": "tag"},
        format="json")

    assert response.status_code == 400
    assert response.json() == {"trigger_tag": ["Choose the tag that starts this sequence."]}
    assert not Sequence.objects.exists()


def test_steps_are_added_in_order_with_their_window(editor_api, draft):
    first = _step(editor_api, draft, delay_amount=0)
    second = _step(editor_api, draft, delay_amount=3, delay_unit="days", window_start_hour=9, window_end_hour=11,
                   weekdays=[0, 1, 2, 3, 4])
    inserted = _step(editor_api, draft, subject="In between", position=2)

    assert first.status_code == 201, first.json()
    assert second.json()["weekdays"] == [0, 1, 2, 3, 4]
    assert (second.json()["window_start_hour"], second.json()["window_end_hour"]) == (9, 11)
    listed = editor_api.get("/api/v1/steps/", {"sequence": draft.pk, "ordering": "position"}).json()["results"]
    assert [(s["position"], s["subject"]) for s in listed] == [(1, "Hello"), (2, "In between"), (3, "Hello")]
    assert inserted.status_code == 201


def test_a_step_that_does_not_parse_is_400_with_its_line(editor_api, draft):
    response = _step(editor_api, draft, body="<p>ok</p>\n{% bogus %}")

    assert response.status_code == 400
    assert response.json() == {"body": ["Line 2: unexpected tag 'bogus'"]}
    assert not Step.objects.exists()


def test_a_bad_window_is_400(editor_api, draft):
    response = _step(editor_api, draft, weekdays=[])

    assert response.status_code == 400
    assert not Step.objects.exists()


def test_step_patch_move_pause_and_delete(editor_api, draft):
    a = _step(editor_api, draft, subject="A").json()
    b = _step(editor_api, draft, subject="B").json()

    patched = editor_api.patch(f"/api/v1/steps/{a['id']}/", {"subject": "A2"}, format="json")
    moved = editor_api.post(f"/api/v1/steps/{b['id']}/move/", {"position": 1}, format="json")
    paused = editor_api.post(f"/api/v1/steps/{a['id']}/state/", {"is_active": False}, format="json")
    deleted = editor_api.delete(f"/api/v1/steps/{b['id']}/")

    assert patched.json()["subject"] == "A2"
    assert moved.json()["position"] == 1
    assert paused.json()["is_active"] is False
    assert deleted.status_code == 204
    assert list(Step.objects.values_list("subject", "is_active")) == [("A2", False)]


def test_enable_without_steps_is_400_with_what_to_fix(editor_api, draft):
    response = editor_api.post(f"/api/v1/sequences/{draft.pk}/enable/", {}, format="json")

    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Add at least one step (or resume a paused one)."]}
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_enable_pause_resume_enroll_and_remove(editor_api, draft):
    _step(editor_api, draft)
    subscriber = SubscriptionFactory(mailing_list=draft.mailing_list, subscriber__email="ada@example.org").subscriber

    enabled = editor_api.post(f"/api/v1/sequences/{draft.pk}/enable/", {}, format="json")
    enrolled = editor_api.post(f"/api/v1/sequences/{draft.pk}/enroll/", {"email": "ADA@example.org"}, format="json")
    again = editor_api.post(f"/api/v1/sequences/{draft.pk}/enroll/", {"subscriber": subscriber.pk}, format="json")
    paused = editor_api.post(f"/api/v1/sequences/{draft.pk}/pause/", {"reason": "Typo"}, format="json")
    resumed = editor_api.post(f"/api/v1/sequences/{draft.pk}/resume/")
    listed = editor_api.get(f"/api/v1/sequences/{draft.pk}/enrollments/").json()["results"]
    removed = editor_api.post(f"/api/v1/sequences/{draft.pk}/remove/", {"subscriber": subscriber.pk}, format="json")

    assert enabled.json()["status"] == "active"
    assert enrolled.status_code == 201 and enrolled.json()["entered"] is True
    assert again.status_code == 200 and again.json()["entered"] is False
    assert (paused.json()["status"], paused.json()["pause_reason"]) == ("paused", "Typo")
    assert resumed.json()["status"] == "active"
    assert [e["subscriber"] for e in listed] == [subscriber.pk]
    assert removed.json() == {"removed": True}
    assert Enrollment.objects.get().status == "exited"


def test_enroll_refuses_someone_not_confirmed_on_the_list(editor_api, draft):
    _step(editor_api, draft)
    editor_api.post(f"/api/v1/sequences/{draft.pk}/enable/", {}, format="json")
    stranger = SubscriptionFactory(subscriber__email="bob@example.org").subscriber

    response = editor_api.post(f"/api/v1/sequences/{draft.pk}/enroll/", {"subscriber": stranger.pk}, format="json")
    unknown = editor_api.post(f"/api/v1/sequences/{draft.pk}/enroll/", {"email": "nobody@example.org"},
                              format="json")

    assert response.status_code == 400
    assert "is not a confirmed subscriber" in response.json()["non_field_errors"][0]
    assert unknown.json() == {"email": ["No subscriber has this address."]}
    assert not Enrollment.objects.exists()


def test_sequences_are_read_by_viewers_and_written_by_editors(viewer_api, draft):
    assert viewer_api.get(f"/api/v1/sequences/{draft.pk}/").json()["name"] == "Welcome"
    assert viewer_api.patch(f"/api/v1/sequences/{draft.pk}/", {"name": "X"}, format="json").status_code == 403
    assert viewer_api.post(f"/api/v1/sequences/{draft.pk}/enable/", {}, format="json").status_code == 403
    draft.refresh_from_db()
    assert (draft.name, draft.status) == ("Welcome", "draft")


def test_delete_sequence(editor_api, draft):
    assert editor_api.delete(f"/api/v1/sequences/{draft.pk}/").status_code == 204
    assert not Sequence.objects.exists()
