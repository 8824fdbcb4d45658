"""Two-factor sign-in: TOTP per RFC 6238, enrolment, sign-in with a code, replay, limits, recovery codes, resets."""

import time

import pytest
from django.contrib.auth import SESSION_KEY

from autoresponder import crypto, twofactor
from autoresponder.models import RecoveryCode, TwoFactor
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

RFC_KEY = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1


@pytest.mark.parametrize("at, code", [
    (59, "94287082"), (1111111109, "07081804"), (1111111111, "14050471"),
    (1234567890, "89005924"), (2000000000, "69279037"), (20000000000, "65353130"),
])
def test_codes_match_the_rfc_6238_test_vectors(at, code):
    assert twofactor.hotp(RFC_KEY, twofactor.time_step(at), digits=8) == code


def code_for(user, *, steps=0):
    secret = twofactor.secret_of(TwoFactor.objects.get(user=user))
    return twofactor.hotp(twofactor.decode_secret(secret), twofactor.time_step() + steps)


def enrol(user):
    twofactor.start_enrolment(user)
    return twofactor.confirm_enrolment(user, code_for(user))


def password_step(client, username="alice", next_url=""):
    url = "/accounts/login/" + (f"?next={next_url}" if next_url else "")
    return client.post(url, {"username": username, "password": PASSWORD})


# --- Enrolment ------------------------------------------------------------------------------


def test_enrolment_shows_a_qr_code_and_the_key_and_stores_the_secret_encrypted(alice_client, alice):
    # when
    response = alice_client.post("/account/two-factor/start/")
    page = alice_client.get("/account/two-factor/")

    # then
    assert response.status_code == 302 and response["Location"] == "/account/two-factor/"
    device = TwoFactor.objects.get(user=alice)
    secret = twofactor.secret_of(device)
    assert len(secret) == 32 and secret not in device.secret
    html = page.content.decode()
    assert "<svg" in html and "QR code for your authenticator app" in html
    assert " ".join(secret[i:i + 4] for i in range(0, 32, 4)) in html
    assert device.confirmed_at is None and not twofactor.is_enabled(alice)


def test_a_wrong_first_code_leaves_two_factor_off(alice_client, alice):
    alice_client.post("/account/two-factor/start/")
    wrong = "000000" if code_for(alice) != "000000" else "111111"

    response = alice_client.post("/account/two-factor/", {"code": wrong})

    assert response.status_code == 400
    assert "That code is not right" in response.content.decode()
    assert not twofactor.is_enabled(alice) and RecoveryCode.objects.count() == 0


def test_the_right_first_code_turns_it_on_and_shows_ten_recovery_codes_once(alice_client, alice):
    alice_client.post("/account/two-factor/start/")

    response = alice_client.post("/account/two-factor/", {"code": code_for(alice)})

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    assert twofactor.is_enabled(alice)
    codes = response.context["codes"]
    assert len(codes) == 10 and len(set(codes)) == 10
    stored = set(RecoveryCode.objects.filter(user=alice).values_list("digest", flat=True))
    assert len(stored) == 10 and not any(c.replace("-", "") in d for c in codes for d in stored)
    # the set-up page is gone once it is on
    assert alice_client.get("/account/two-factor/")["Location"] == "/account/"


def test_starting_again_while_on_is_refused(alice_client, alice):
    enrol(alice)
    device = TwoFactor.objects.get(user=alice)

    response = alice_client.post("/account/two-factor/start/", follow=True)

    assert "already on" in response.content.decode()
    assert TwoFactor.objects.get(user=alice).secret == device.secret


def test_a_changed_encryption_key_makes_the_secret_unreadable(alice, settings):
    device = twofactor.start_enrolment(alice)
    settings.ENCRYPTION_KEY = "another-key-" + "x" * 40
    assert twofactor.secret_of(device) is None
    assert crypto.decrypt(device.secret, purpose="something else") is None


# --- Sign-in ---------------------------------------------------------------------------------


def test_the_password_alone_does_not_sign_in_when_two_factor_is_on(client, alice):
    enrol(alice)

    response = password_step(client)

    assert response.status_code == 302 and response["Location"] == "/accounts/login/code/"
    assert SESSION_KEY not in client.session
    assert client.get("/")["Location"].startswith("/accounts/login/")


def test_a_good_code_signs_in_and_goes_where_the_user_was_going(client, alice):
    enrol(alice)
    TwoFactor.objects.filter(user=alice).update(last_step=0)  # the enrolment code's step is spent
    password_step(client, next_url="/lists/")

    response = client.post("/accounts/login/code/", {"code": code_for(alice)})

    assert response.status_code == 302 and response["Location"] == "/lists/"
    assert int(client.session[SESSION_KEY]) == alice.pk
    assert client.get("/").status_code == 200


def test_a_code_works_once(client, client_class, alice):
    enrol(alice)
    TwoFactor.objects.filter(user=alice).update(last_step=0)
    code = code_for(alice)
    password_step(client)
    assert client.post("/accounts/login/code/", {"code": code}).status_code == 302

    # when: someone replays the same code in another browser
    other = client_class()
    password_step(other)
    response = other.post("/accounts/login/code/", {"code": code})

    # then
    assert response.status_code == 400
    assert SESSION_KEY not in other.session


def test_codes_one_step_either_side_are_accepted_and_two_steps_off_are_not(alice):
    enrol(alice)
    now = time.time()
    secret = twofactor.decode_secret(twofactor.secret_of(TwoFactor.objects.get(user=alice)))
    late = now + 10 * twofactor.STEP_SECONDS  # past the enrolment's step
    step = twofactor.time_step(late)

    assert twofactor.verify(alice, twofactor.hotp(secret, step - 2), at=late) is False
    assert twofactor.verify(alice, twofactor.hotp(secret, step - 1), at=late) is True
    # an older step than the last accepted one is refused, even within the drift
    assert twofactor.verify(alice, twofactor.hotp(secret, step - 1), at=late) is False
    assert twofactor.verify(alice, twofactor.hotp(secret, step + 1), at=late) is True
    assert twofactor.verify(alice, twofactor.hotp(secret, step), at=late) is False


def test_code_guesses_are_limited_per_user(client, alice):
    enrol(alice)
    TwoFactor.objects.filter(user=alice).update(last_step=0)
    password_step(client)
    good = code_for(alice)
    wrong = "000000" if good != "000000" else "111111"
    statuses = [client.post("/accounts/login/code/", {"code": wrong}).status_code for _ in range(5)]

    # when: the sixth try is even the right code
    response = client.post("/accounts/login/code/", {"code": good})

    assert statuses == [400] * 5
    assert response.status_code == 429 and "Too many codes tried" in response.content.decode()
    assert SESSION_KEY not in client.session


def test_a_recovery_code_signs_in_once(client, client_class, alice):
    codes = enrol(alice)
    password_step(client)

    assert client.post("/accounts/login/code/", {"code": codes[3].upper()}).status_code == 302
    other = client_class()
    password_step(other)
    assert other.post("/accounts/login/code/", {"code": codes[3]}).status_code == 400
    assert twofactor.recovery_codes_left(alice) == 9


def test_the_code_step_expires(client, alice):
    enrol(alice)
    password_step(client)
    session = client.session
    session["twofactor_pending"]["at"] -= 301
    session.save()

    response = client.post("/accounts/login/code/", {"code": code_for(alice)})

    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert SESSION_KEY not in client.session


def test_the_code_step_without_a_password_step_goes_back_to_sign_in(client):
    response = client.get("/accounts/login/code/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_the_admin_signs_in_through_the_dashboard_sign_in(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/admin/"


# --- Managing it --------------------------------------------------------------------------------


def test_turning_it_off_needs_the_password(alice_client, alice):
    enrol(alice)

    refused = alice_client.post("/account/two-factor/off/", {"password": "not it"})
    assert refused.status_code == 400 and twofactor.is_enabled(alice)

    done = alice_client.post("/account/two-factor/off/", {"password": PASSWORD})
    assert done.status_code == 302 and not twofactor.is_enabled(alice)
    assert not RecoveryCode.objects.filter(user=alice).exists()


def test_new_recovery_codes_replace_the_old_ones(alice_client, alice):
    old = enrol(alice)

    response = alice_client.post("/account/two-factor/recovery-codes/", {"password": PASSWORD})

    new = response.context["codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert not twofactor.use_recovery_code(alice, old[0])
    assert twofactor.use_recovery_code(alice, new[0])


def test_the_account_page_shows_the_state(victor_client, victor):
    assert "Set up two-factor sign-in" in victor_client.get("/account/").content.decode()
    enrol(victor)
    page = victor_client.get("/account/").content.decode()
    assert "10 recovery codes left" in page and "Turn off two-factor sign-in" in page


def test_an_owner_resets_a_users_two_factor(alice_client, bob):
    enrol(bob)

    response = alice_client.post(f"/users/{bob.pk}/two-factor/reset/")

    assert response.status_code == 302
    assert not TwoFactor.objects.filter(user=bob).exists() and not RecoveryCode.objects.filter(user=bob).exists()


def test_an_editor_cannot_reset_someone_elses_two_factor(bob_client, victor):
    enrol(victor)

    response = bob_client.post(f"/users/{victor.pk}/two-factor/reset/")

    assert response.status_code == 403 and twofactor.is_enabled(victor)
