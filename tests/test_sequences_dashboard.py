"""Dashboard pages for sequences: roles, building a five-step welcome sequence, the step
editor with its preview, switching on and off, editing steps, adding people by hand."""

import pytest
from django.urls import reverse

from campaigns import sequences
from campaigns.models import Enrollment, Sequence, Step
from lists.models import Subscription
from tests.factories import MailingListFactory
from tests.sending_factories import SenderFactory
from tests.sequence_helpers import build, people, step_body

pytestmark = pytest.mark.django_db
INDEX = reverse("campaigns:sequence_index")
FOOTER = '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender.postal_address }}</p>'


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def step_post(**overrides):
    data = {
        "name": "", "subject": "Welcome, {{ subscriber.first_name | default: 'friend' }}", "body_format": "html",
        "layout": "", "body": "<p>Hello</p>" + FOOTER, "text_body": "", "timing": "delay", "delay_amount": "0",
        "delay_unit": "days", "date_attribute": "", "date_offset_days": "0", "yearly": "on",
        "window_start_hour": "", "window_end_hour": "", "weekdays": [str(d) for d in range(7)],
    }
    data.update(overrides)
    return data


def sequence_post(mailing_list, sender, **overrides):
    data = {
        "name": "Welcome", "mailing_list": str(mailing_list.pk), "segment": "", "sender": str(sender.pk),
        "trigger": "subscribe", "trigger_tag": "", "reentry": "never", "exit_tag": "", "skip_after_days": "3",
        "backend": "", "track_opens": "on", "track_clicks": "on",
    }
    data.update(overrides)
    return data


# --- Roles -------------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_sign_in(client):
    response = client.get(INDEX)
    assert response.status_code == 302 and "/login" in response["Location"]


def test_mallory_without_a_role_is_refused(mallory_client):
    assert mallory_client.get(INDEX).status_code == 403


def test_victor_reads_sequences_but_cannot_change_them(victor_client):
    sequence = build(steps=((0, "days"),), activate=False)
    page = victor_client.get(reverse("campaigns:sequence_detail", args=[sequence.pk]))
    assert page.status_code == 200
    assert b"Switch on" not in page.content and b"Add a step" not in page.content
    response = victor_client.post(reverse("campaigns:sequence_enable", args=[sequence.pk]))
    assert response.status_code == 403
    sequence.refresh_from_db()
    assert sequence.status == Sequence.DRAFT


def test_viewer_cannot_create_a_sequence(victor_client):
    response = victor_client.post(reverse("campaigns:sequence_create"),
                                  sequence_post(MailingListFactory(), SenderFactory()))
    assert response.status_code == 403
    assert Sequence.objects.count() == 0


# --- Building a five-step welcome sequence -----------------------------------------------------------


def test_bob_builds_a_five_step_welcome_sequence_and_switches_it_on(bob_client):
    # given
    mailing_list, sender = MailingListFactory(name="Newsletter"), SenderFactory()
    # when he saves the settings
    response = bob_client.post(reverse("campaigns:sequence_create"), sequence_post(mailing_list, sender))
    sequence = Sequence.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("campaigns:step_create", args=[sequence.pk])
    # and adds five steps, a day apart after the welcome mail, in a morning window on weekdays
    for number, delay in enumerate((0, 1, 2, 3, 7), start=1):
        response = bob_client.post(reverse("campaigns:step_create", args=[sequence.pk]), step_post(
            subject=f"Step {number}", body=step_body(number), delay_amount=str(delay),
            window_start_hour="9", window_end_hour="11", weekdays=["0", "1", "2", "3", "4"]))
        assert response.status_code == 302, response.content.decode()[:2000]
    # and switches it on for new subscribers only
    response = bob_client.post(reverse("campaigns:sequence_enable", args=[sequence.pk]), {"enroll_existing": "0"})
    # then
    assert response.status_code == 302
    sequence.refresh_from_db()
    assert (sequence.status, sequence.enroll_existing, sequence.created_by.username) == ("active", False, "bob")
    steps = list(sequence.steps.values_list("position", "subject", "delay_amount", "window_start_hour",
                                            "window_end_hour", "window_weekdays"))
    assert steps == [(n, f"Step {n}", d, 9, 11, 0b0011111) for n, d in zip(range(1, 6), (0, 1, 2, 3, 7))]
    page = bob_client.get(reverse("campaigns:sequence_detail", args=[sequence.pk]))
    assert b"09:00\xe2\x80\x9311:00, Mon, Tue, Wed, Thu, Fri" in page.content
    assert b"7 days later" in page.content


def test_a_step_with_a_template_error_is_refused_with_its_line_and_nothing_is_saved(bob_client):
    sequence = build(steps=(), activate=False)
    response = bob_client.post(reverse("campaigns:step_create", args=[sequence.pk]),
                               step_post(body="<p>Hi</p>\n<p>{% if %}</p>"))
    assert response.status_code == 200
    assert "Line 2" in response.content.decode()
    assert Step.objects.count() == 0


def test_a_window_without_weekdays_is_refused_with_a_reason(bob_client):
    sequence = build(steps=(), activate=False)
    response = bob_client.post(reverse("campaigns:step_create", args=[sequence.pk]), step_post(weekdays=[]))
    assert response.status_code == 200
    assert Step.objects.count() == 0


def test_the_step_editor_starts_from_a_saved_template(bob_client):
    from campaigns.models import Template

    template = Template.objects.create(name="Welcome", subject="Saved subject", body="<p>Saved</p>" + FOOTER)
    sequence = build(steps=(), activate=False)
    page = bob_client.get(reverse("campaigns:step_create", args=[sequence.pk]) + f"?template={template.pk}")
    assert page.status_code == 200
    assert "Content copied from “Welcome”" in page.content.decode()
    assert 'value="Saved subject"' in page.content.decode()


def test_the_preview_renders_the_unsaved_step_for_the_chosen_subscriber(bob_client):
    sequence = build(steps=(), activate=False)
    reader = people(sequence.mailing_list, 1)[0]
    response = bob_client.post(
        reverse("campaigns:step_preview", args=[sequence.pk]),
        step_post(subject="Hi {{ subscriber.first_name }} from {{ list.name }}", preview_email=reader.email),
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert "Hi Reader0 from Newsletter" in response.content.decode()


def test_the_preview_names_what_would_stop_the_step_being_sent(bob_client):
    sequence = build(steps=(), activate=False)
    response = bob_client.post(reverse("campaigns:step_preview", args=[sequence.pk]),
                               step_post(body="<p>No footer</p>"), HTTP_HX_REQUEST="true")
    assert "no visible unsubscribe link" in response.content.decode()


def test_a_test_send_of_a_step_goes_to_the_given_address(bob_client, smtp_server):
    from tests.sending_factories import backend_for

    backend_for(smtp_server)
    sequence = build(steps=(), activate=False)
    response = bob_client.post(reverse("campaigns:step_test", args=[sequence.pk]),
                               step_post(email="bob@example.com"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert [m.rcpt_tos for m in smtp_server.messages] == [["bob@example.com"]]
    assert smtp_server.messages[0].message["Subject"] == "[Test] Welcome, friend"


# --- Running sequences ----------------------------------------------------------------------------------


def test_switching_on_without_steps_says_what_to_do(bob_client):
    sequence = build(steps=(), activate=False)
    response = bob_client.post(reverse("campaigns:sequence_enable", args=[sequence.pk]), follow=True)
    assert "Add at least one step" in response.content.decode()
    sequence.refresh_from_db()
    assert sequence.status == Sequence.DRAFT


def test_pause_and_resume(bob_client):
    sequence = build()
    bob_client.post(reverse("campaigns:sequence_pause", args=[sequence.pk]))
    sequence.refresh_from_db()
    assert (sequence.status, sequence.pause_reason) == ("paused", "Paused by bob.")
    response = bob_client.post(reverse("campaigns:sequence_resume", args=[sequence.pk]), follow=True)
    sequence.refresh_from_db()
    assert sequence.status == "active"
    assert "Steps due more than 3 day(s) ago are skipped" in response.content.decode()


def test_moving_a_step_up_reorders_the_steps(bob_client):
    sequence = build(steps=((0, "days"), (1, "days"), (2, "days")), activate=False)
    third = sequence.steps.get(position=3)
    bob_client.post(reverse("campaigns:step_move", args=[sequence.pk, third.pk]), {"direction": "up"})
    assert list(sequence.steps.values_list("delay_amount", flat=True)) == [0, 2, 1]


def test_pausing_a_step_marks_it_skipped(bob_client):
    sequence = build(steps=((0, "days"), (1, "days")))
    second = sequence.steps.get(position=2)
    bob_client.post(reverse("campaigns:step_toggle", args=[sequence.pk, second.pk]))
    second.refresh_from_db()
    assert second.is_active is False
    page = bob_client.get(reverse("campaigns:sequence_detail", args=[sequence.pk]))
    assert "Paused: skipped" in page.content.decode()


def test_deleting_a_step_asks_first_then_deletes(bob_client):
    sequence = build(steps=((0, "days"), (1, "days")))
    second = sequence.steps.get(position=2)
    url = reverse("campaigns:step_delete", args=[sequence.pk, second.pk])
    assert "Subscribers waiting for this step go on to the next one" in bob_client.get(url).content.decode()
    assert Step.objects.filter(pk=second.pk).exists()
    bob_client.post(url)
    assert not Step.objects.filter(pk=second.pk).exists()


def test_a_step_of_another_sequence_is_not_found(bob_client):
    one, other = build(activate=False), build(activate=False, mailing_list=MailingListFactory(name="Other"))
    step = other.steps.get()
    response = bob_client.post(reverse("campaigns:step_toggle", args=[one.pk, step.pk]))
    assert response.status_code == 404
    step.refresh_from_db()
    assert step.is_active is True


def test_editing_settings_of_a_running_sequence_keeps_existing_or_new_as_decided(bob_client):
    sequence = build(enroll_existing=False)
    data = sequence_post(sequence.mailing_list, sequence.sender, name="Renamed", enroll_existing="on")
    response = bob_client.post(reverse("campaigns:sequence_edit", args=[sequence.pk]), data)
    assert response.status_code == 302
    sequence.refresh_from_db()
    assert (sequence.name, sequence.enroll_existing) == ("Renamed", False)


def test_adding_and_removing_a_subscriber_by_hand(bob_client):
    sequence = build(trigger=Sequence.ON_API)
    reader = people(sequence.mailing_list, 1)[0]
    response = bob_client.post(reverse("campaigns:sequence_enroll", args=[sequence.pk]), {"email": reader.email},
                               follow=True)
    assert "reader0@example.org entered the sequence." in response.content.decode()
    assert Enrollment.objects.get().source == "admin"
    response = bob_client.post(reverse("campaigns:sequence_remove", args=[sequence.pk]), {"email": reader.email},
                               follow=True)
    assert "left the sequence" in response.content.decode()
    assert Enrollment.objects.get().exit_reason == Enrollment.REMOVED


def test_adding_someone_not_on_the_list_is_refused_with_the_reason(bob_client):
    sequence = build(trigger=Sequence.ON_API)
    reader = people(sequence.mailing_list, 1)[0]
    Subscription.objects.update(status=Subscription.UNSUBSCRIBED)
    response = bob_client.post(reverse("campaigns:sequence_enroll", args=[sequence.pk]), {"email": reader.email},
                               follow=True)
    assert "is not a confirmed subscriber of “Newsletter”" in response.content.decode()
    assert Enrollment.objects.count() == 0


def test_the_index_shows_status_and_who_is_in_each_sequence(victor_client):
    sequence = build()
    people(sequence.mailing_list, 2)
    sequences.discover(sequence, now=sequence.activated_at, every=0)
    page = victor_client.get(INDEX).content.decode()
    assert "Welcome" in page and "Running" in page
    assert "<td>2</td>" in page


def test_deleting_a_sequence_asks_first(bob_client):
    sequence = build()
    url = reverse("campaigns:sequence_delete", args=[sequence.pk])
    assert "Delete “Welcome”?" in bob_client.get(url).content.decode()
    assert Sequence.objects.filter(pk=sequence.pk).exists()
    bob_client.post(url)
    assert not Sequence.objects.filter(pk=sequence.pk).exists()


def test_the_figures_partial_refreshes_alone(victor_client):
    sequence = build()
    response = victor_client.get(reverse("campaigns:sequence_figures", args=[sequence.pk]), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "<html" not in response.content.decode() and "In the sequence now" in response.content.decode()
