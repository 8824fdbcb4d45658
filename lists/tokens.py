"""
Signed tokens for public URLs (django.core.signing, one salt per purpose).

A token carries the row id and a keyed fingerprint of the subscriber's address,
never a bare id: changing or erasing the address invalidates every link sent to
it. Confirmation links expire after CONFIRM_MAX_AGE; preference links do not
expire (they sit in the footer of every mail), so the address binding is what
retires them.
"""

import hashlib
import hmac
import json
from datetime import timedelta
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.urls import reverse
from django.utils.crypto import constant_time_compare

from .models import Subscriber, Subscription

CONFIRM_SALT = "lists.confirm"
PREFERENCES_SALT = "lists.preferences"
FINGERPRINT_SALT = "lists.tokens.address"
CONFIRM_MAX_AGE = timedelta(days=7)


class TokenError(Exception):
    """A token that is forged, expired or points at something gone; the message is for the visitor."""


# Every mail carries a preference link, so its token is made once per message. These two
# helpers give exactly what django.utils.crypto.salted_hmac and signing.Signer give (a test
# holds them to it), with the derived key kept per process instead of hashed again per call.
@lru_cache(maxsize=16)
def _keyed_hmac(key_salt, secret):
    return hmac.new(hashlib.sha256((key_salt + secret).encode()).digest(), digestmod=hashlib.sha256)


def _salted_hmac(key_salt, value):
    mac = _keyed_hmac(key_salt, settings.SECRET_KEY).copy()
    mac.update(value.encode())
    return mac


_ENCODER = json.JSONEncoder(separators=(",", ":"))  # what Signer's JSONSerializer writes, made once


def _sign_object(payload, salt):
    """signing.Signer(salt=salt).sign_object(payload), for JSON payloads."""
    value = signing.b64_encode(_ENCODER.encode(payload).encode("latin-1")).decode()
    return f"{value}:{signing.b64_encode(_salted_hmac(salt + 'signer', value).digest()).decode()}"


def address_fingerprint(email):
    """A short keyed hash of the lower-cased address; readable in the token, useless without SECRET_KEY."""
    return _salted_hmac(FINGERPRINT_SALT, email.strip().lower()).hexdigest()[:16]


def _absolute(path):
    return settings.SITE_URL + path


def confirm_token(subscription):
    payload = {"s": subscription.pk, "a": address_fingerprint(subscription.subscriber.email)}
    return signing.TimestampSigner(salt=CONFIRM_SALT).sign_object(payload)


def confirm_url(subscription):
    """The absolute double opt-in link for `subscription`; valid for seven days."""
    return _absolute(reverse("lists:public_confirm", args=[confirm_token(subscription)]))


def preferences_token(subscriber):
    payload = {"s": subscriber.pk, "a": address_fingerprint(subscriber.email)}
    return _sign_object(payload, PREFERENCES_SALT)


def preferences_url(subscriber):
    """The absolute preference-centre link for `subscriber`; valid while the address is unchanged."""
    return _absolute(reverse("lists:public_preferences", args=[preferences_token(subscriber)]))


def subscription_from_confirm_token(token):
    """The Subscription a confirmation token names; raises TokenError when it is not valid."""
    try:
        payload = signing.TimestampSigner(salt=CONFIRM_SALT).unsign_object(token, max_age=CONFIRM_MAX_AGE)
    except signing.SignatureExpired:
        raise TokenError("This confirmation link has expired. Sign up again and we will send you a new one.")
    except signing.BadSignature:
        raise TokenError("This confirmation link is not valid. Check that you copied the whole link.")
    subscription = Subscription.objects.select_related("subscriber", "mailing_list").filter(pk=_id(payload)).first()
    if subscription is None or not _same_address(payload, subscription.subscriber.email):
        raise TokenError("This confirmation link is no longer valid. Sign up again to get a new one.")
    return subscription


def subscriber_from_preferences_token(token):
    """The Subscriber a preference-centre token names; raises TokenError when it is not valid."""
    try:
        payload = signing.Signer(salt=PREFERENCES_SALT).unsign_object(token)
    except signing.BadSignature:
        raise TokenError("This link is not valid. Use the link at the bottom of our most recent mail.")
    subscriber = Subscriber.objects.filter(pk=_id(payload)).first()
    if subscriber is None or not _same_address(payload, subscriber.email):
        raise TokenError("This link is no longer valid. Use the link at the bottom of our most recent mail.")
    return subscriber


def _id(payload):
    value = payload.get("s") if isinstance(payload, dict) else None
    return value if isinstance(value, int) else None


def _same_address(payload, email):
    return constant_time_compare(str(payload.get("a", "")), address_fingerprint(email))
