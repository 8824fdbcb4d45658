import json
import re
import time

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse

from lists import public, services, tokens
from lists.models import MailingList, Subscriber, Subscription
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def newsletter():
    return MailingListFactory(
        name="Weekly Letter", opt_in=MailingList.DOUBLE, accent_color="#ffcc00",
        description="Recipes every Friday.", consent_text="I agree to get the Weekly Letter.",
        form_fields=[{"name": "company", "label": "Company", "required": False}],
    )


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run a request and then its on_commit callbacks (the confirmation task), as a real commit would."""

    def run(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)

    return run


def _signup_url(mailing_list, suffix=""):
    return reverse("lists:public_signup", args=[mailing_list.public_id]) + suffix


def _post_signup(client, mailing_list, suffix="", **fields):
    """POST form fields; UPPER_CASE keywords (REMOTE_ADDR, HTTP_ORIGIN, …) go to the request environment."""
    meta = {k: v for k, v in fields.items() if k.isupper()}
    data = {k: v for k, v in fields.items() if not k.isupper()}
    return client.post(_signup_url(mailing_list, suffix), data, **meta)


def _json(response):
    return json.loads(response.content)


# --- Hosted signup page ----------------------------------------------------------------------


def test_signup_page_shows_the_form_with_consent_text_and_list_colours(client, newsletter):
    response = client.get(_signup_url(newsletter))

    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1>Weekly Letter</h1>" in html
    assert "Recipes every Friday." in html
    assert '<p class="consent">I agree to get the Weekly Letter.</p>' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert 'name="company"' in html
    assert '<div class="hp" aria-hidden="true">' in html
    assert f'href="/s/{newsletter.public_id}/style.css"' in html
    assert "style=" not in html and "<script" not in html
    assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_list_stylesheet_carries_the_accent_and_a_readable_text_colour(client, newsletter):
    response = client.get(reverse("lists:public_list_css", args=[newsletter.public_id]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/css; charset=utf-8"
    assert response.content.decode() == ":root { --accent: #ffcc00; --accent-fg: #111111; }\n"


def test_list_stylesheet_ignores_a_malformed_colour(client, newsletter):
    MailingList.objects.filter(pk=newsletter.pk).update(accent_color="red;}")
    response = client.get(reverse("lists:public_list_css", args=[newsletter.public_id]))
    assert response.content.decode() == ":root { --accent: #2456d6; --accent-fg: #ffffff; }\n"


def test_hosted_signup_subscribes_and_sends_the_confirmation_mail(client, newsletter, committed, mailoutbox):
    response = committed(_post_signup, client, newsletter, email="ada@example.org", name="Ada", company="Analytical Engines",
                            HTTP_USER_AGENT="Mozilla/5.0 (X11)")

    assert response.status_code == 200
    assert "Check your inbox for a confirmation link" in response.content.decode()
    subscription = Subscription.objects.select_related("subscriber").get()
    assert subscription.status == Subscription.UNCONFIRMED
    assert (subscription.subscriber.email, subscription.subscriber.name) == ("ada@example.org", "Ada")
    assert subscription.subscriber.attributes == {"company": "Analytical Engines"}
    assert (subscription.source, subscription.consent_form) == ("form", "hosted signup page")
    assert subscription.consent_text == "I agree to get the Weekly Letter."
    assert subscription.consent_ip == "127.0.0.1"
    assert [m.to for m in mailoutbox] == [["ada@example.org"]]


def test_hosted_signup_needs_the_csrf_token_and_works_with_it(newsletter):
    client = Client(enforce_csrf_checks=True)
    refused = _post_signup(client, newsletter, email="ada@example.org")
    assert refused.status_code == 403
    assert Subscriber.objects.count() == 0

    page = client.get(_signup_url(newsletter))
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.content.decode()).group(1)
    accepted = _post_signup(client, newsletter, email="ada@example.org", csrfmiddlewaretoken=token)
    assert accepted.status_code == 200
    assert Subscriber.objects.count() == 1


def test_hosted_signup_redirects_to_the_thank_you_page_and_allows_it_in_the_csp(client, newsletter):
    newsletter.thank_you_url = "https://shop.example/thanks"
    newsletter.save()
    response = _post_signup(client, newsletter, email="ada@example.org")
    assert response.status_code == 302
    assert response["Location"] == "https://shop.example/thanks"
    page = client.get(_signup_url(newsletter))
    assert page["Content-Security-Policy"].endswith("; form-action 'self' https://shop.example")


def test_a_filled_honeypot_gets_the_normal_answer_and_nothing_is_stored(client, newsletter, committed, mailoutbox):
    real = committed(_post_signup, client, newsletter, email="ada@example.org")
    bot = committed(_post_signup, client, newsletter, email="bob@example.org", website="http://spam.example")

    assert bot.status_code == real.status_code == 200
    assert bot.content == real.content
    assert list(Subscriber.objects.values_list("email", flat=True)) == ["ada@example.org"]
    assert [m.to for m in mailoutbox] == [["ada@example.org"]]


def test_the_answer_is_the_same_whether_or_not_the_address_is_subscribed(client, newsletter, committed, mailoutbox):
    SubscriptionFactory(mailing_list=newsletter, subscriber__email="ada@example.org", status=Subscription.CONFIRMED)
    known = committed(_post_signup, client, newsletter, email="ada@example.org")
    unknown = committed(_post_signup, client, newsletter, email="bob@example.org")
    assert known.status_code == unknown.status_code == 200
    assert known.content == unknown.content
    assert [m.to for m in mailoutbox] == [["bob@example.org"]]


@pytest.mark.parametrize(
    "data, field, message",
    [
        ({"email": "ada@example.org\r\nBcc: victim@example.net"}, "email", "cannot contain line breaks"),
        ({"email": "not an address"}, "email", "Enter a valid email address"),
        ({"email": "ada@example.org", "name": "Ada\nBcc: x@example.net"}, "name", "cannot contain line breaks"),
        ({"email": "a" * 260 + "@example.org"}, "email", "Ensure this value has at most 254 characters"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_stored(client, newsletter, data, field, message):
    response = _post_signup(client, newsletter, **data)
    assert response.status_code == 400
    errors = response.context["form"].errors
    assert message in " ".join(errors[field])
    assert message.split(" (")[0] in response.content.decode().replace("&#x27;", "'")
    assert Subscriber.objects.count() == 0


def test_a_required_custom_field_must_be_filled(client, newsletter):
    newsletter.form_fields = [{"name": "company", "label": "Company", "required": True}]
    newsletter.save()
    response = _post_signup(client, newsletter, email="ada@example.org")
    assert response.status_code == 400
    assert response.context["form"].errors == {"company": ["This field is required."]}
    assert Subscriber.objects.count() == 0


def test_signups_are_limited_per_ip(client, newsletter):
    for n in range(public.SIGNUPS_PER_IP):
        assert _post_signup(client, newsletter, email=f"reader{n}@example.org").status_code == 200
    refused = _post_signup(client, newsletter, email="one-too-many@example.org")
    elsewhere = _post_signup(client, newsletter, email="other@example.org", REMOTE_ADDR="198.51.100.4")

    assert refused.status_code == 429
    assert "Too many signups from your network" in refused.content.decode()
    assert elsewhere.status_code == 200
    assert not Subscriber.objects.filter(email="one-too-many@example.org").exists()
    assert Subscriber.objects.count() == public.SIGNUPS_PER_IP + 1


def test_the_confirmation_mail_is_capped_per_address(client, newsletter, committed, mailoutbox):
    for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        assert committed(_post_signup, client, newsletter, email="ada@example.org", REMOTE_ADDR=ip).status_code == 200
    assert len(mailoutbox) == 1


def test_an_archived_list_takes_no_signups(client, newsletter):
    newsletter.is_archived = True
    newsletter.save()
    assert client.get(_signup_url(newsletter)).status_code == 410
    assert _post_signup(client, newsletter, email="ada@example.org").status_code == 410
    assert Subscriber.objects.count() == 0


def test_an_unknown_list_is_not_found(client):
    assert client.get("/s/3f2504e0-4f89-11d3-9a0c-0305e82c3301/").status_code == 404


# --- Embedded form ------------------------------------------------------------------------------


def test_the_embed_snippet_posts_to_the_embed_endpoint_and_escapes_text(newsletter):
    newsletter.consent_text = "I agree <script>alert(1)</script>"
    snippet = public.embed_snippet(newsletter)
    assert f'action="http://testserver/s/{newsletter.public_id}/embed"' in snippet
    assert 'name="email" required' in snippet
    assert 'name="company"' in snippet
    assert '<div hidden aria-hidden="true"><label>Leave this empty <input type="text" name="website"' in snippet
    assert "I agree &lt;script&gt;alert(1)&lt;/script&gt;" in snippet
    assert "csrfmiddlewaretoken" not in snippet


def test_the_embedded_form_works_from_a_foreign_site_without_csrf_token(newsletter, committed, mailoutbox):
    client = Client(enforce_csrf_checks=True)
    response = committed(_post_signup, client, newsletter, "embed", email="ada@example.org",
                            HTTP_ORIGIN="https://shop.example", HTTP_REFERER="https://shop.example/blog?u=ada")
    assert response.status_code == 200
    assert "Check your inbox" in response.content.decode()
    subscription = Subscription.objects.get()
    assert subscription.consent_form == "embedded form https://shop.example"
    assert len(mailoutbox) == 1


def test_the_embedded_form_shows_errors_on_the_hosted_page(client, newsletter):
    response = _post_signup(client, newsletter, "embed", email="nope")
    assert response.status_code == 400
    html = response.content.decode()
    assert f'action="{_signup_url(newsletter)}"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert Subscriber.objects.count() == 0


def test_the_embedded_form_shares_the_honeypot_and_rate_limit(client, newsletter):
    assert _post_signup(client, newsletter, "embed", email="bot@example.org", website="x").status_code == 200
    for n in range(public.SIGNUPS_PER_IP - 1):
        _post_signup(client, newsletter, "embed", email=f"reader{n}@example.org")
    assert _post_signup(client, newsletter, "embed", email="late@example.org").status_code == 429
    assert not Subscriber.objects.filter(email__in=["bot@example.org", "late@example.org"]).exists()


# --- JSON endpoint ----------------------------------------------------------------------------------


def test_json_preflight_allows_any_origin(client, newsletter):
    response = client.options(_signup_url(newsletter, "json"), HTTP_ORIGIN="https://shop.example")
    assert response.status_code == 204
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Methods"] == "POST, OPTIONS"


def test_json_signup_with_a_form_body(newsletter):
    client = Client(enforce_csrf_checks=True)
    response = _post_signup(client, newsletter, "json", email="ada@example.org", company="ACME")
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert _json(response) == {"ok": True, "message": newsletter.thank_you_message, "redirect": None}
    assert Subscriber.objects.get().attributes == {"company": "ACME"}


def test_json_signup_with_a_json_body_sent_as_text(client, newsletter):
    body = json.dumps({"email": "ada@example.org", "name": "Ada"})
    response = client.post(_signup_url(newsletter, "json"), body, content_type="text/plain")
    assert response.status_code == 200
    assert _json(response)["ok"] is True
    assert Subscription.objects.get().consent_form == "JSON API"


def test_json_signup_reports_field_errors(client, newsletter):
    body = json.dumps({"email": "ada@example.org\nBcc: x@example.net"})
    response = client.post(_signup_url(newsletter, "json"), body, content_type="application/json")
    assert response.status_code == 400
    assert _json(response) == {
        "ok": False, "errors": {"email": ["The email address cannot contain line breaks or control characters."]}}
    assert Subscriber.objects.count() == 0


@pytest.mark.parametrize("body", ["[1, 2]", "not json", '{"email": {"nested": 1}}'])
def test_json_signup_refuses_anything_but_an_object_of_text(client, newsletter, body):
    response = client.post(_signup_url(newsletter, "json"), body, content_type="application/json")
    assert response.status_code == 400
    assert _json(response) == {"ok": False, "error": "Send a JSON object of text fields, or a form."}


def test_json_signup_answers_a_bot_like_anyone_and_limits_per_ip(client, newsletter):
    answers = {_post_signup(client, newsletter, "json", email=f"r{n}@example.org", website="x").content
               for n in range(public.SIGNUPS_PER_IP)}
    limited = _post_signup(client, newsletter, "json", email="ada@example.org")
    assert len(answers) == 1
    assert json.loads(answers.pop())["ok"] is True
    assert limited.status_code == 429
    assert limited["Access-Control-Allow-Origin"] == "*"
    assert Subscriber.objects.count() == 0


def test_json_signup_for_an_unknown_list(client):
    response = client.post("/s/3f2504e0-4f89-11d3-9a0c-0305e82c3301/json", {"email": "ada@example.org"})
    assert response.status_code == 404
    assert _json(response) == {"ok": False, "error": "This list does not accept signups."}


# --- Double opt-in ---------------------------------------------------------------------------------------


@pytest.fixture
def waiting(newsletter):
    return SubscriptionFactory(mailing_list=newsletter, subscriber__email="ada@example.org",
                               status=Subscription.UNCONFIRMED)


def _confirm_path(subscription):
    return reverse("lists:public_confirm", args=[tokens.confirm_token(subscription)])


def test_confirm_get_shows_a_button_and_does_not_confirm(client, waiting):
    response = client.get(_confirm_path(waiting))
    assert response.status_code == 200
    assert "Yes, subscribe me" in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == Subscription.UNCONFIRMED


def test_confirm_post_confirms_and_is_idempotent(client, waiting):
    first = client.post(_confirm_path(waiting), REMOTE_ADDR="203.0.113.8")
    waiting.refresh_from_db()
    confirmed_at = waiting.confirmed_at
    second = client.post(_confirm_path(waiting), REMOTE_ADDR="198.51.100.1")

    assert first.status_code == second.status_code == 200
    assert "You&#x27;re subscribed. Welcome aboard!" in second.content.decode()
    waiting.refresh_from_db()
    assert (waiting.status, waiting.confirm_ip, waiting.confirmed_at) == ("confirmed", "203.0.113.8", confirmed_at)


def _forged(subscription):
    token = tokens.confirm_token(subscription)
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


def _expired(subscription):
    signer = signing.TimestampSigner(salt=tokens.CONFIRM_SALT)
    signer.timestamp = lambda: signing.b62_encode(int(time.time()) - 8 * 86400)
    return signer.sign_object({"s": subscription.pk, "a": tokens.address_fingerprint("ada@example.org")})


def _other_purpose(subscription):
    return tokens.preferences_token(subscription.subscriber)


@pytest.mark.parametrize("make_token, message", [
    (_forged, "This confirmation link is not valid. Check that you copied the whole link."),
    (_other_purpose, "This confirmation link is not valid."),
    (_expired, "This confirmation link has expired. Sign up again and we will send you a new one."),
])
def test_a_bad_confirmation_token_gets_a_friendly_page_and_changes_nothing(client, waiting, make_token, message):
    before = Subscription.objects.values().get(pk=waiting.pk)
    path = reverse("lists:public_confirm", args=[make_token(waiting)])
    for response in (client.get(path), client.post(path)):
        assert response.status_code == 400
        assert message in response.content.decode()
    assert Subscription.objects.values().get(pk=waiting.pk) == before


def test_an_old_confirmation_link_does_not_undo_an_unsubscribe(client, waiting):
    path = _confirm_path(waiting)
    services.unsubscribe(waiting.subscriber)
    response = client.post(path)
    assert response.status_code == 200
    assert "You unsubscribed from this list after signing up" in response.content.decode()
    waiting.refresh_from_db()
    assert waiting.status == Subscription.UNSUBSCRIBED


def test_double_opt_in_end_to_end_through_a_real_smtp_server(client, newsletter, settings, smtp_server, committed):
    # given: mail goes out through a real SMTP server on loopback
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = smtp_server.host, smtp_server.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    # when: someone signs up on the hosted page
    committed(_post_signup, client, newsletter, email="ada@example.org", name="Ada")
    # then: the server received one confirmation mail with a working link
    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ada@example.org"]
    message = received.message
    assert message["Subject"] == "Please confirm your subscription"
    assert message["From"] == "Alice's Shop <news@alice.example>"
    link = re.search(r"http://testserver(/c/[^/\s]+/)", message.get_content()).group(1)
    assert "Yes, subscribe me" in client.get(link).content.decode()
    assert Subscription.objects.get().status == Subscription.UNCONFIRMED
    client.post(link)
    assert Subscription.objects.get().status == Subscription.CONFIRMED


# --- Preference centre --------------------------------------------------------------------------------


@pytest.fixture
def reader(newsletter):
    subscriber = SubscriberFactory(email="ada@example.org")
    SubscriptionFactory(subscriber=subscriber, mailing_list=newsletter, status=Subscription.CONFIRMED)
    SubscriptionFactory(subscriber=subscriber, mailing_list=MailingListFactory(name="Offers"),
                        status=Subscription.CONFIRMED)
    return subscriber


def _preferences_path(subscriber):
    return reverse("lists:public_preferences", args=[tokens.preferences_token(subscriber)])


def _statuses(subscriber):
    return dict(subscriber.subscriptions.values_list("mailing_list__name", "status"))


def test_preferences_page_lists_the_subscriptions(client, reader):
    response = client.get(_preferences_path(reader))
    html = response.content.decode()
    assert response.status_code == 200
    assert "ada@example.org" in html
    assert html.index("Offers") < html.index("Weekly Letter")
    assert html.count('value="leave"') == 2


def test_preferences_leave_one_list(client, reader, newsletter):
    path = _preferences_path(reader)
    response = client.post(path, {"action": "leave", "list": str(newsletter.public_id)})
    assert response.status_code == 302
    assert response["Location"] == path
    assert _statuses(reader) == {"Weekly Letter": "unsubscribed", "Offers": "confirmed"}
    assert "You left Weekly Letter." in client.get(path).content.decode()


def test_preferences_rejoin_a_double_list_sends_a_fresh_confirmation(client, reader, newsletter, committed, mailoutbox):
    services.unsubscribe(reader, newsletter)
    committed(client.post, _preferences_path(reader), {"action": "join", "list": str(newsletter.public_id)})
    assert _statuses(reader) == {"Weekly Letter": "unconfirmed", "Offers": "confirmed"}
    assert [m.to for m in mailoutbox] == [["ada@example.org"]]
    assert Subscription.objects.get(mailing_list=newsletter).consent_form == "preference centre"


def test_preferences_unsubscribe_from_everything(client, reader):
    client.post(_preferences_path(reader), {"action": "leave_all"})
    assert _statuses(reader) == {"Weekly Letter": "unsubscribed", "Offers": "unsubscribed"}


@pytest.mark.parametrize("data", [
    {"action": "leave", "list": "not-a-uuid"},
    {"action": "leave", "list": "3f2504e0-4f89-11d3-9a0c-0305e82c3301"},
    {"action": "explode", "list": ""},
])
def test_preferences_refuse_an_unknown_choice_and_change_nothing(client, reader, data):
    response = client.post(_preferences_path(reader), data)
    assert response.status_code == 400
    assert "That choice is not available" in response.content.decode()
    assert _statuses(reader) == {"Weekly Letter": "confirmed", "Offers": "confirmed"}


def test_preferences_cannot_touch_a_list_the_subscriber_is_not_on(client, reader):
    stranger_list = MailingListFactory(name="Private")
    client.post(_preferences_path(reader), {"action": "join", "list": str(stranger_list.public_id)})
    assert _statuses(reader) == {"Weekly Letter": "confirmed", "Offers": "confirmed"}


def test_a_preferences_link_stops_working_when_the_address_changes(client, reader):
    path = _preferences_path(reader)
    services.update_subscriber(reader, email="ada@lovelace.example")
    response = client.post(path, {"action": "leave_all"})
    assert response.status_code == 400
    assert "This link is no longer valid." in response.content.decode()
    assert _statuses(reader) == {"Weekly Letter": "confirmed", "Offers": "confirmed"}


def test_a_forged_preferences_link_is_refused(client, reader):
    response = client.get(reverse("lists:public_preferences", args=["eyJzIjoxfQ:forged"]))
    assert response.status_code == 400
    assert "This link is not valid." in response.content.decode()


def test_public_urls_are_absolute_and_carry_no_bare_id(reader):
    url = tokens.preferences_url(reader)
    assert url.startswith("http://testserver/p/")
    assert f"/p/{reader.pk}/" not in url
    assert tokens.subscriber_from_preferences_token(url.rsplit("/", 2)[1]) == reader


def test_json_signup_refuses_a_large_body_before_reading_it(client, newsletter):
    body = json.dumps({"email": "ada@example.org", "name": "x" * public.MAX_JSON_BODY})
    response = client.post(_signup_url(newsletter, "json"), body, content_type="text/plain")
    assert response.status_code == 413
    assert _json(response) == {"ok": False, "error": "The request is too large."}
    assert Subscriber.objects.count() == 0


# --- In a real browser ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_signup_in_a_browser_under_the_strict_csp(page, live_server):
    # given: a list with its own colour, seen on a phone-sized screen
    newsletter = MailingListFactory(name="Weekly Letter", accent_color="#aa0000")
    page.set_viewport_size({"width": 390, "height": 800})
    page.goto(f"{live_server.url}/s/{newsletter.public_id}/")
    # then: the list's stylesheet applied and the honeypot is out of sight
    button = page.get_by_role("button", name="Subscribe")
    assert button.evaluate("b => getComputedStyle(b).backgroundColor") == "rgb(170, 0, 0)"
    assert page.locator(".hp").bounding_box()["x"] < 0
    # when: a person signs up
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_label("Name").fill("Ada")
    button.click()
    page.wait_for_load_state("networkidle")
    # then
    assert "Check your inbox" in page.locator(".done").inner_text()
    assert Subscription.objects.get().subscriber.email == "ada@example.org"
