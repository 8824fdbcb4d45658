"""The Django admin for sequences, steps and enrollments: lists, searches and the actions."""

import pytest
from django.contrib.auth import get_user_model

from campaigns.models import Enrollment, Message, Sequence, Step
from tests.sequence_helpers import T0, build, people, run

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


def action(client, model, name, pks):
    return client.post(f"/admin/campaigns/{model}/", {"action": name, "_selected_action": [str(pk) for pk in pks]},
                       follow=True)


def test_every_sequence_model_lists_and_searches(admin_client):
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 1)
    run(T0, sequence)
    for model, query in (("sequence", "Welcome"), ("step", "Step"), ("enrollment", "reader0")):
        page = admin_client.get(f"/admin/campaigns/{model}/", {"q": query})
        assert page.status_code == 200, model
    assert "reader0@example.org" in admin_client.get("/admin/campaigns/enrollment/").content.decode()
    assert admin_client.get(f"/admin/campaigns/sequence/{sequence.pk}/change/").status_code == 200


def test_switch_on_action_reports_what_is_missing(admin_client):
    sequence = build(steps=(), activate=False)
    response = action(admin_client, "sequence", "switch_on", [sequence.pk])
    assert "Add at least one step" in response.content.decode()
    sequence.refresh_from_db()
    assert sequence.status == Sequence.DRAFT


def test_pause_and_resume_actions(admin_client):
    sequence = build()
    action(admin_client, "sequence", "pause", [sequence.pk])
    sequence.refresh_from_db()
    assert (sequence.status, sequence.pause_reason) == ("paused", "Paused by root.")
    action(admin_client, "sequence", "resume", [sequence.pk])
    sequence.refresh_from_db()
    assert sequence.status == "active"


def test_pause_steps_action(admin_client):
    sequence = build(steps=((0, "days"), (1, "days")))
    second = sequence.steps.get(position=2)
    action(admin_client, "step", "pause_steps", [second.pk])
    second.refresh_from_db()
    assert second.is_active is False


def test_remove_action_takes_the_subscriber_out_and_cancels_queued_mail(admin_client):
    sequence = build(steps=((0, "days"), (1, "days")))
    people(sequence.mailing_list, 1)
    run(T0, sequence)
    enrollment = Enrollment.objects.get()
    action(admin_client, "enrollment", "remove", [enrollment.pk])
    enrollment.refresh_from_db()
    assert (enrollment.status, enrollment.exit_reason) == ("exited", "removed")
    assert list(Message.objects.values_list("status", flat=True)) == ["cancelled"]


def test_deleting_a_sequence_in_the_admin_cancels_its_queued_mail(admin_client):
    sequence = build()
    people(sequence.mailing_list, 1)
    run(T0, sequence)
    admin_client.post(f"/admin/campaigns/sequence/{sequence.pk}/delete/", {"post": "yes"})
    assert not Sequence.objects.exists() and not Step.objects.exists()
    assert list(Message.objects.values_list("status", flat=True)) == ["cancelled"]


def test_enrollments_cannot_be_added_by_hand_in_the_admin(admin_client):
    assert admin_client.get("/admin/campaigns/enrollment/add/").status_code == 403
