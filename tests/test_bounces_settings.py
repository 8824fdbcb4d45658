"""Settings › Bounces and complaints: everyone with a role reads the policy, admins change it."""

import pytest

from campaigns.models import BouncePolicy

pytestmark = pytest.mark.django_db

URL = "/settings/bounces/"
VALID = {"hard_bounce_suppresses": "on", "soft_bounce_limit": "5", "soft_bounce_days": "30",
         "complaint_unsubscribes": "on", "complaint_suppresses": "on",
         # the automatic brakes, at their defaults (tests/test_brakes.py)
         "brake_messages": "1000", "brake_min_messages": "100", "brake_bounce_percent": "5",
         "brake_complaint_percent": "0.3", "policy_pause_after": "5"}


def policy_values():
    row = BouncePolicy.objects.get(pk=1)
    return (row.hard_bounce_suppresses, row.soft_bounce_limit, row.soft_bounce_days, row.complaint_unsubscribes,
            row.complaint_suppresses)


def test_a_viewer_reads_the_policy_without_a_way_to_change_it(victor_client):
    response = victor_client.get(URL)
    body = response.content.decode()
    assert response.status_code == 200
    assert "Bounce policy" in body and "Only an admin can change the policy." in body
    assert 'name="soft_bounce_limit" value="3"' in body and "disabled" in body
    assert "Save the policy" not in body


def test_an_editor_cannot_change_the_policy(bob_client):
    before = (True, 3, 15, True, True)
    response = bob_client.post(URL, {**VALID, "soft_bounce_limit": "1"}, follow=True)
    assert "Only an admin can change the bounce policy." in response.content.decode()
    assert policy_values() == before


def test_an_owner_changes_the_policy(alice_client):
    response = alice_client.post(URL, {**VALID, "hard_bounce_suppresses": ""}, follow=True)
    assert "Bounce policy saved." in response.content.decode()
    assert policy_values() == (False, 5, 30, True, True)


def test_a_limit_without_days_is_refused_and_changes_nothing(alice_client):
    response = alice_client.post(URL, {**VALID, "soft_bounce_days": "0"})
    assert response.status_code == 200
    assert "Give the number of days the soft bounces are counted over." in response.content.decode()
    assert policy_values() == (True, 3, 15, True, True)


def test_an_htmx_save_answers_with_the_form_only(alice_client):
    response = alice_client.post(URL, VALID, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert body.lstrip().startswith('<form method="post" id="bounce-policy"')
    assert "Bounce policy saved." in body
    assert policy_values() == (True, 5, 30, True, True)


def test_someone_without_a_role_is_refused(mallory_client):
    assert mallory_client.get(URL).status_code == 403


def test_the_settings_page_links_to_the_policy(victor_client):
    assert 'href="/settings/bounces/"' in victor_client.get("/settings/").content.decode()
