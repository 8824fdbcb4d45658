import pytest
from django.core import mail as django_mail
from django.urls import reverse

from autoresponder import outbox

pytestmark = pytest.mark.django_db


def test_login_page_renders_with_strict_csp(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"Sign in to Autoresponder" in response.content
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    assert response["X-Frame-Options"] == "DENY"


def test_home_redirects_anonymous_visitors_to_login(client):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_alice_signs_in_with_her_password_and_sees_the_overview(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 302
    assert response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert b"<h1>Overview</h1>" in page.content


def test_wrong_password_is_refused(client, alice):
    response = client.post(reverse("login"), {"username": "alice", "password": "guess"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content
    assert "_auth_user_id" not in client.session


def test_login_attempts_are_rate_limited_per_address(client, alice):
    for _ in range(10):
        client.post(reverse("login"), {"username": "alice", "password": "guess"})
    response = client.post(reverse("login"), {"username": "alice", "password": "correct horse battery staple"})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in client.session


def test_mallory_without_a_role_is_denied_the_dashboard(mallory_client):
    response = mallory_client.get("/")
    assert response.status_code == 403
    assert b"does not have the role this page needs" in response.content


@pytest.mark.parametrize("who", ["alice_client", "bob_client", "victor_client"])
def test_every_role_sees_the_overview(request, who):
    response = request.getfixturevalue(who).get("/")
    assert response.status_code == 200


def test_logout_needs_a_post(alice_client):
    assert alice_client.get(reverse("logout")).status_code == 405
    response = alice_client.post(reverse("logout"))
    assert response.status_code == 302
    assert alice_client.get("/").status_code == 302


def test_navigation_shows_every_built_section_to_a_viewer(victor_client):
    response = victor_client.get("/")
    labels = [item["label"] for item in response.context["nav"]]
    # viewers read every section; the views themselves refuse changes
    assert labels[0] == "Overview"
    assert {"Overview", "Outbox", "Lists", "Subscribers", "Broadcasts", "Templates", "Sending", "Settings"} <= set(labels)


def test_navigation_is_empty_for_mallory(mallory):
    from django.test import RequestFactory

    from autoresponder.navigation import navigation

    request = RequestFactory().get("/")
    request.user = mallory
    assert navigation(request) == {"nav": [], "user_role": None}


def test_overview_warns_when_no_worker_has_reported(alice_client):
    response = alice_client.get("/")
    assert b"The background worker has not reported yet" in response.content


def test_overview_shows_a_running_worker_after_a_heartbeat(alice_client):
    from autoresponder.celery import heartbeat

    heartbeat.delay()  # eager in tests: runs now and writes to Redis
    response = alice_client.get("/")
    assert b"Background worker and scheduler are running" in response.content


def test_sent_mail_lands_in_the_outbox_and_the_dashboard_lists_it(alice_client, settings):
    settings.EMAIL_BACKEND = "autoresponder.outbox.OutboxBackend"  # pytest-django swaps in locmem
    message = django_mail.EmailMultiAlternatives(
        "Welcome <b>aboard</b>", "Plain body", "shop@alice.example", ["reader@example.org"]
    )
    message.attach_alternative("<p>HTML body<script>alert(1)</script></p>", "text/html")
    message.send()

    [entry] = outbox.entries()
    index = alice_client.get(reverse("outbox"))
    assert index.status_code == 200
    assert b"Welcome &lt;b&gt;aboard&lt;/b&gt;" in index.content
    detail = alice_client.get(reverse("outbox_detail", args=[entry.name]))
    assert detail.status_code == 200
    assert b"Plain body" in detail.content
    assert b'sandbox src="/outbox/' in detail.content
    html = alice_client.get(reverse("outbox_html", args=[entry.name]))
    assert html.content == b"<p>HTML body<script>alert(1)</script></p>"
    assert "sandbox" in html["Content-Security-Policy"]
    assert "script-src" not in html["Content-Security-Policy"]  # default-src 'none' forbids scripts


@pytest.mark.parametrize("name", ["..%2F..%2Fetc%2Fpasswd", "secret_key", "00000000000000000000-" + "0" * 32 + ".eml"])
def test_outbox_refuses_names_that_are_not_stored_messages(alice_client, name):
    assert alice_client.get(f"/outbox/{name}/").status_code == 404


def test_outbox_is_denied_to_mallory(mallory_client):
    assert mallory_client.get(reverse("outbox")).status_code == 403


def test_healthz_reports_the_database(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_static_assets_are_served_from_the_app(client):
    response = client.get("/static/vendor/htmx-2.0.11.min.js")
    assert response.status_code == 200


def test_admin_answers_for_superusers_only(client, alice, admin_client):
    assert admin_client.get("/admin/").status_code == 200
    client.force_login(alice)
    assert client.get("/admin/").status_code == 302  # alice is not staff: sent to the admin login
