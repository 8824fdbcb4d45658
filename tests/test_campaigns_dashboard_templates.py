"""Dashboard: layouts and templates (validation with line numbers), sandboxed previews, test sends."""

import re

import pytest
from django.urls import reverse

from campaigns.models import Layout, Template
from tests.factories import SubscriberFactory
from tests.sending_factories import BODY, SenderFactory, backend_for

pytestmark = pytest.mark.django_db

INDEX = reverse("campaigns:template_index")
PREVIEW_POLICY = "default-src 'none'; img-src * data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'"
LAYOUT = "<html><body><div class='frame'>{{ content }}</div></body></html>"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def template_post(**overrides):
    data = {"name": "Spring", "subject": "Spring news for {{ subscriber.first_name | default: 'you' }}",
            "body_format": "html", "body": BODY, "text_body": "", "layout": ""}
    data.update(overrides)
    return data


def iframe_src(html):
    """The src of the sandboxed preview iframe, checking its sandbox on the way."""
    tag = re.search(r"<iframe[^>]*>", html).group()
    assert re.search(r"\ssandbox(\s|>)", tag), tag  # sandbox with no allowances
    assert "allow-same-origin" not in tag and "allow-scripts" not in tag
    return re.search(r'src="([^"]+)"', tag).group(1)


@pytest.fixture
def spring():
    return Template.objects.create(name="Spring", subject="Spring news for {{ subscriber.first_name }}", body=BODY)


# --- Role matrix ------------------------------------------------------------------------------


def test_mallory_is_refused_templates(mallory_client, spring):
    for url in (INDEX, reverse("campaigns:template_detail", args=[spring.pk])):
        assert mallory_client.get(url).status_code == 403


def test_victor_reads_and_previews_but_cannot_change(victor_client, spring):
    assert victor_client.get(INDEX).status_code == 200
    detail = victor_client.get(reverse("campaigns:template_detail", args=[spring.pk]))
    assert detail.status_code == 200
    assert reverse("campaigns:template_edit", args=[spring.pk]) not in detail.text
    assert "Send test" not in detail.text

    assert victor_client.post(reverse("campaigns:template_create"), template_post(name="New")).status_code == 403
    assert victor_client.post(reverse("campaigns:template_edit", args=[spring.pk]),
                              template_post(subject="Changed")).status_code == 403
    assert victor_client.post(reverse("campaigns:template_delete", args=[spring.pk])).status_code == 403
    assert victor_client.post(reverse("campaigns:layout_create"), {"name": "L", "html": LAYOUT}).status_code == 403
    assert victor_client.post(reverse("campaigns:template_test", args=[spring.pk]), {"email": "v@example.org"}).status_code == 403

    spring.refresh_from_db()
    assert spring.subject == "Spring news for {{ subscriber.first_name }}"
    assert list(Template.objects.values_list("name", flat=True)) == ["Spring"]
    assert not Layout.objects.exists()


# --- Saving validates the Liquid --------------------------------------------------------------


def test_bob_creates_a_template(bob_client):
    response = bob_client.post(reverse("campaigns:template_create"), template_post())
    template = Template.objects.get(name="Spring")
    assert response["Location"] == reverse("campaigns:template_detail", args=[template.pk])
    assert template.body == BODY


def test_a_template_that_does_not_parse_is_refused_with_its_line(bob_client):
    body = "<p>Hello</p>\n<p>{{ subscriber.name }}</p>\n{% if %}<p>no condition</p>{% endif %}"
    response = bob_client.post(reverse("campaigns:template_create"), template_post(body=body))
    assert response.status_code == 200
    assert "Line 3: missing expression" in response.text
    assert not Template.objects.exists()


def test_a_subject_error_is_shown_on_the_subject(bob_client):
    response = bob_client.post(reverse("campaigns:template_create"), template_post(subject="Hi {{ subscriber.name "))
    errors = response.context["form"].errors
    assert list(errors) == ["subject"]
    assert errors["subject"][0].startswith("Line 1:")


def test_an_edit_with_an_error_changes_nothing(bob_client, spring):
    bob_client.post(reverse("campaigns:template_edit", args=[spring.pk]), template_post(body="{% for %}"))
    spring.refresh_from_db()
    assert spring.body == BODY


def test_a_layout_needs_exactly_one_content_slot(bob_client):
    response = bob_client.post(reverse("campaigns:layout_create"), {"name": "Plain", "html": "<html><body></body></html>"})
    assert "The layout has no {{ content }} slot" in response.text
    assert not Layout.objects.exists()

    bob_client.post(reverse("campaigns:layout_create"), {"name": "Plain", "html": LAYOUT})
    assert Layout.objects.get(name="Plain").html == LAYOUT


def test_deleting_a_layout_leaves_its_templates_without_one(bob_client):
    layout = Layout.objects.create(name="Frame", html=LAYOUT)
    template = Template.objects.create(name="T", subject="S", body=BODY, layout=layout)
    assert "Delete the layout “Frame”?" in bob_client.get(reverse("campaigns:layout_delete", args=[layout.pk])).text
    bob_client.post(reverse("campaigns:layout_delete", args=[layout.pk]))
    template.refresh_from_db()
    assert template.layout is None and not Layout.objects.exists()


def test_bob_deletes_a_template(bob_client, spring):
    response = bob_client.post(reverse("campaigns:template_delete", args=[spring.pk]))
    assert response["Location"] == INDEX
    assert not Template.objects.exists()


# --- Previews -----------------------------------------------------------------------------------


def test_the_preview_is_a_sandboxed_iframe_with_its_own_policy(victor_client, spring):
    SenderFactory(postal_address="1 Market Street, Springfield")
    detail = victor_client.get(reverse("campaigns:template_detail", args=[spring.pk]))
    src = iframe_src(detail.text)

    page = victor_client.get(src)
    assert page.status_code == 200
    assert page["Content-Security-Policy"] == PREVIEW_POLICY
    assert page["X-Frame-Options"] == "SAMEORIGIN"
    assert page["Content-Type"] == "text/html; charset=utf-8"
    assert "Hello Sam," in page.text  # the sample subscriber
    assert "1 Market Street, Springfield" in page.text
    assert "Spring news for Sam" in detail.text


def test_the_preview_renders_for_a_chosen_subscriber(victor_client, spring):
    SenderFactory()
    SubscriberFactory(email="ada@example.org", name="Ada Lovelace")
    partial = victor_client.get(reverse("campaigns:template_preview", args=[spring.pk]),
                                {"preview_email": "ADA@example.org"}, HTTP_HX_REQUEST="true")
    assert "Spring news for Ada" in partial.text
    assert "As ada@example.org would see it" in partial.text
    assert "Hello Ada," in victor_client.get(iframe_src(partial.text)).text


def test_a_preview_belongs_to_the_user_who_rendered_it(victor_client, bob_client, spring):
    SenderFactory()
    src = iframe_src(victor_client.get(reverse("campaigns:template_detail", args=[spring.pk])).text)
    assert bob_client.get(src).status_code == 404
    assert victor_client.get(reverse("campaigns:preview_html", args=["made-up-token"])).status_code == 404


def test_a_stored_script_does_not_run_in_the_preview(victor_client):
    SenderFactory()
    template = Template.objects.create(name="X", subject="S", body=BODY.replace("<p>Hello", "<script>alert(1)</script><p>Hello"))
    page = victor_client.get(iframe_src(victor_client.get(reverse("campaigns:template_detail", args=[template.pk])).text))
    # the markup is the author's, but the policy forbids every script and the iframe has no allow-scripts
    assert "script-src" not in page["Content-Security-Policy"] and "default-src 'none'" in page["Content-Security-Policy"]


def test_live_preview_of_unsaved_fields_shows_errors_with_the_line(bob_client):
    SenderFactory()
    response = bob_client.post(reverse("campaigns:template_draft_preview"),
                               template_post(body="<p>ok</p>\n{{ subscriber.name | shout }}"), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "This cannot be shown yet." in response.text
    assert "The body cannot be rendered: Line 2: unknown filter &#x27;shout&#x27;" in response.text
    assert "<iframe" not in response.text


def test_live_preview_flags_a_missing_unsubscribe_link_and_address(bob_client):
    SenderFactory()
    response = bob_client.post(reverse("campaigns:template_draft_preview"),
                               template_post(body="<p>Hello {{ subscriber.first_name }}</p>"), HTTP_HX_REQUEST="true")
    assert "This would not be sent as it is:" in response.text
    assert "The message has no visible unsubscribe link." in response.text
    assert "Hello Sam" in bob_client.get(iframe_src(response.text)).text


def test_live_preview_of_markdown_in_a_layout(bob_client):
    SenderFactory()
    layout = Layout.objects.create(name="Frame", html=LAYOUT)
    body = "# Hi {{ subscriber.first_name }}\n\n[Unsubscribe]({{ unsubscribe_url }}) · {{ sender.postal_address }}"
    response = bob_client.post(reverse("campaigns:template_draft_preview"),
                               template_post(body=body, body_format="markdown", layout=str(layout.pk)))
    html = bob_client.get(iframe_src(response.text)).text
    assert "<div class=\"frame\"><h1>Hi Sam</h1>" in html.replace("'", '"')


def test_layout_live_preview_uses_sample_content(bob_client):
    response = bob_client.post(reverse("campaigns:layout_draft_preview"), {"name": "L", "html": LAYOUT})
    html = bob_client.get(iframe_src(response.text)).text
    assert "Hello Sam," in html
    assert "This would not be sent" not in response.text  # a layout alone needs no footer


def test_subscriber_picker_offers_matching_addresses(victor_client):
    SubscriberFactory(email="ada@example.org", name="Ada Lovelace")
    SubscriberFactory(email="grace@example.org", name="Grace Hopper")
    response = victor_client.get(reverse("campaigns:subscriber_options"), {"preview_email": "ada"})
    assert response.text.strip() == '<option value="ada@example.org">Ada Lovelace</option>'


# --- Test sends -------------------------------------------------------------------------------------


def test_a_test_send_of_a_template_reaches_the_smtp_server(bob_client, smtp_server, spring):
    backend_for(smtp_server)
    SenderFactory(from_email="news@alice.example")
    response = bob_client.post(reverse("campaigns:template_test", args=[spring.pk]),
                               {"email": "proof@alice.example"}, HTTP_HX_REQUEST="true")
    assert "Sent to proof@alice.example through" in response.text
    assert [m.rcpt_tos for m in smtp_server.messages] == [["proof@alice.example"]]
    message = smtp_server.messages[0].message
    assert message["Subject"] == "[Test] Spring news for"
    assert message["From"] == "Alice's Shop <news@alice.example>"


def test_a_test_send_of_unsaved_fields_uses_the_picked_subscriber(bob_client, smtp_server):
    backend_for(smtp_server)
    sender = SenderFactory()
    SubscriberFactory(email="ada@example.org", name="Ada Lovelace")
    bob_client.post(reverse("campaigns:template_draft_test"), {
        **template_post(), "email": "proof@alice.example", "preview_email": "ada@example.org",
        "preview_sender": str(sender.pk),
    }, HTTP_HX_REQUEST="true")
    assert smtp_server.messages[0].message["Subject"] == "[Test] Spring news for Ada"


def test_a_test_send_needs_a_sender_identity(bob_client, smtp_server, spring):
    backend_for(smtp_server)
    response = bob_client.post(reverse("campaigns:template_test", args=[spring.pk]),
                               {"email": "proof@alice.example"}, HTTP_HX_REQUEST="true")
    assert "Add a sender identity under Settings first" in response.text
    assert smtp_server.messages == []


def test_a_test_send_refuses_a_bad_address(bob_client, smtp_server, spring):
    backend_for(smtp_server)
    SenderFactory()
    response = bob_client.post(reverse("campaigns:template_test", args=[spring.pk]),
                               {"email": "proof@alice.example\r\nBcc: x@evil.example"}, HTTP_HX_REQUEST="true")
    assert "Enter a valid email address." in response.text
    assert smtp_server.messages == []


def test_test_sends_are_rate_limited_per_user(bob_client, alice_client, smtp_server, spring):
    from campaigns.views_preview import TEST_SENDS_PER_HOUR

    backend_for(smtp_server)
    SenderFactory()
    url = reverse("campaigns:template_test", args=[spring.pk])
    for _ in range(TEST_SENDS_PER_HOUR):
        bob_client.post(url, {"email": "proof@alice.example"}, HTTP_HX_REQUEST="true")
    refused = bob_client.post(url, {"email": "proof@alice.example"}, HTTP_HX_REQUEST="true")
    assert f"You sent {TEST_SENDS_PER_HOUR} tests in the last hour" in refused.text
    assert len(smtp_server.messages) == TEST_SENDS_PER_HOUR
    # another user has a budget of their own
    alice_client.post(url, {"email": "proof@alice.example"}, HTTP_HX_REQUEST="true")
    assert len(smtp_server.messages) == TEST_SENDS_PER_HOUR + 1


def test_a_test_send_without_htmx_redirects_with_the_outcome(bob_client, smtp_server, spring):
    backend_for(smtp_server)
    SenderFactory()
    response = bob_client.post(reverse("campaigns:template_test", args=[spring.pk]),
                               {"email": "proof@alice.example"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("campaigns:template_detail", args=[spring.pk])
    assert "Sent to proof@alice.example" in response.text
