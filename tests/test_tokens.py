import base64

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from autoresponder import tokens
from autoresponder.tokens import BadToken


def test_sign_and_unsign_round_trip_the_integers():
    token = tokens.sign("click", 123456789, 42)
    assert tokens.unsign("click", token) == (123456789, 42)


def test_a_token_for_a_billionth_message_and_a_link_is_32_characters_and_url_safe():
    # 5 bytes of message id, 3 of link id and 16 of signature: 24 bytes, 32 characters.
    token = tokens.sign("click", 10**9, 65535)
    assert len(token) == 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_the_same_values_give_the_same_token_so_a_replay_is_accepted():
    token = tokens.sign("unsubscribe", 7)
    assert tokens.sign("unsubscribe", 7) == token
    assert tokens.unsign("unsubscribe", token) == (7,)
    assert tokens.unsign("unsubscribe", token) == (7,)


def test_a_token_for_one_purpose_is_refused_for_another():
    token = tokens.sign("open", 99)
    with pytest.raises(BadToken):
        tokens.unsign("click", token)


def test_a_token_signed_with_another_secret_key_is_refused(settings):
    token = tokens.sign("open", 99)
    settings.SECRET_KEY = "another-secret-key-of-more-than-32-characters-x"
    with pytest.raises(BadToken):
        tokens.unsign("open", token)


def test_changing_any_character_is_detected():
    token = tokens.sign("click", 5001, 17)
    for i in range(len(token)):
        replacement = "A" if token[i] != "A" else "B"
        tampered = token[:i] + replacement + token[i + 1:]
        with pytest.raises(BadToken):
            tokens.unsign("click", tampered)


def test_a_payload_swapped_under_the_same_signature_is_refused():
    # given two real tokens
    raw_a = base64.urlsafe_b64decode(tokens.sign("click", 1, 2) + "==")
    raw_b = base64.urlsafe_b64decode(tokens.sign("click", 3, 4) + "==")
    # when the payload of one is glued to the signature of the other
    forged = base64.urlsafe_b64encode(raw_b[:-16] + raw_a[-16:]).rstrip(b"=").decode()
    # then
    with pytest.raises(BadToken):
        tokens.unsign("click", forged)


@pytest.mark.parametrize("cut", [1, 2, 5, 10])
def test_a_truncated_token_is_refused(cut):
    token = tokens.sign("click", 123456, 789)
    with pytest.raises(BadToken):
        tokens.unsign("click", token[:-cut])


@pytest.mark.parametrize("garbage", ["", "!!!", "a b", "é", "A" * 500, "abc=", "A", "x" * 21 + "\n"])
def test_garbage_is_refused_with_bad_token(garbage):
    with pytest.raises(BadToken):
        tokens.unsign("click", garbage)


def test_a_token_with_padding_added_is_refused():
    token = tokens.sign("click", 1)
    with pytest.raises(BadToken):
        tokens.unsign("click", token + "=")


def test_negative_or_non_integer_values_cannot_be_signed():
    with pytest.raises(ValueError):
        tokens.sign("click", -1)
    with pytest.raises(ValueError):
        tokens.sign("click", "12")
    with pytest.raises(ValueError):
        tokens.sign("click", True)


def test_no_values_is_a_valid_token():
    assert tokens.unsign("open", tokens.sign("open")) == ()


@hypothesis_settings(max_examples=300, deadline=None)
@given(values=st.lists(st.integers(min_value=0, max_value=2**63), max_size=5))
def test_any_non_negative_integers_round_trip(values):
    assert tokens.unsign("click", tokens.sign("click", *values)) == tuple(values)


@hypothesis_settings(max_examples=500, deadline=None)
@given(token=st.text(max_size=80))
def test_arbitrary_text_never_raises_anything_but_bad_token(token):
    try:
        tokens.unsign("click", token)
    except BadToken:
        pass


@hypothesis_settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=40))
def test_arbitrary_base64_never_raises_anything_but_bad_token(raw):
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    try:
        tokens.unsign("click", token)
    except BadToken:
        pass


@pytest.mark.parametrize("email", ["ada@example.org", " Zoë.Ünïcode@Example.ORG ", "x+tag@sub.example.co.uk"])
def test_the_address_fingerprint_is_django_salted_hmac(email, settings):
    from django.utils.crypto import salted_hmac

    from lists import tokens as list_tokens

    for secret in ("first-secret-key-" + "x" * 40, "second-secret-key-" + "y" * 40):
        settings.SECRET_KEY = secret
        fingerprint = salted_hmac(list_tokens.FINGERPRINT_SALT, email.strip().lower(), algorithm="sha256").hexdigest()[:16]
        assert list_tokens.address_fingerprint(email) == fingerprint


@pytest.mark.django_db
def test_preference_tokens_are_compact_and_the_django_signed_ones_in_older_mail_still_work():
    from django.core import signing

    from lists import tokens as list_tokens
    from tests.factories import SubscriberFactory

    ada = SubscriberFactory(email="Ada@Example.org")
    # given: the token mail carries now, and one made as before (django.core.signing)
    new = list_tokens.preferences_token(ada)
    old = signing.Signer(salt=list_tokens.PREFERENCES_SALT).sign_object(
        {"s": ada.pk, "a": list_tokens.address_fingerprint(ada.email)})
    # then: the new one is short and URL-safe, and both open Ada's preferences
    assert len(new) <= 44 and ":" not in new and len(old) > 80
    assert set(new) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert list_tokens.subscriber_from_preferences_token(new) == ada
    assert list_tokens.subscriber_from_preferences_token(old) == ada
    # a token of another purpose carrying the same numbers is refused
    forged = tokens.sign("unsubscribe", *tokens.unsign(list_tokens.PREFERENCES_SALT, new))
    with pytest.raises(list_tokens.TokenError):
        list_tokens.subscriber_from_preferences_token(forged)
    # and changing the address retires both
    ada.email = "ada@elsewhere.example"
    ada.save()
    for token in (new, old):
        with pytest.raises(list_tokens.TokenError, match="no longer valid"):
            list_tokens.subscriber_from_preferences_token(token)


def _made_by_hmac(purpose, payload, secret):
    """A token as this module made them before BLAKE2b: HMAC-SHA256 under a per-purpose key, 16 bytes."""
    import hashlib
    import hmac

    key = hmac.new(secret.encode(), b"autoresponder.campaigns.tokens:" + purpose.encode(), hashlib.sha256).digest()
    mac = hmac.new(key, payload, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode()


def test_a_token_made_before_blake2b_still_verifies_for_its_purpose_only(settings):
    # given: an unsubscribe token in a mail delivered before the change (message 300, as varint)
    old = _made_by_hmac("unsubscribe", bytes([0xAC, 0x02]), settings.SECRET_KEY)
    # then: it still unsubscribes, and it is still no token for another purpose
    assert tokens.unsign("unsubscribe", old) == (300,)
    with pytest.raises(BadToken):
        tokens.unsign("click", old)
    # and the token made now differs, at the same length
    new = tokens.sign("unsubscribe", 300)
    assert new != old and len(new) == len(old)
    assert tokens.unsign("unsubscribe", new) == (300,)


def test_tokens_are_keyed_blake2b_under_a_per_purpose_key(settings):
    import hashlib
    import hmac

    key = hmac.new(settings.SECRET_KEY.encode(), b"autoresponder.campaigns.tokens.blake2b:open", hashlib.sha256).digest()
    payload = bytes([7])
    expected = payload + hashlib.blake2b(payload, key=key, digest_size=16).digest()
    assert tokens.sign("open", 7) == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
