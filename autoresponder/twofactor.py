"""
Optional two-factor sign-in with an authenticator app (TOTP, RFC 6238).

A user turns it on from the account page: start_enrolment() makes a secret
(shown as a QR code and as text), confirm_enrolment() checks a first code and
turns it on, handing back ten recovery codes that are shown once. From then on
sign-in asks for a code after the password (see views_twofactor). A code is
accepted for the current 30-second step and one step either side (phones'
clocks drift), and each step's code works once: the last accepted step is kept
and a conditional UPDATE refuses an older or equal one, even from two requests
at once. Recovery codes are single-use too.

At rest: the secret is encrypted (autoresponder.crypto); recovery codes are
kept as HMAC-SHA256 digests keyed with SECRET_KEY. They carry 50 random bits,
so a keyed hash is enough where a password needs a slow one.
"""

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

import segno
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import salted_hmac

from . import crypto
from .models import RecoveryCode, TwoFactor

STEP_SECONDS = 30
DIGITS = 6
DRIFT_STEPS = 1  # accept the previous and the next step's code too
ISSUER = "Autoresponder"
SECRET_PURPOSE = "two-factor secret"
RECOVERY_SALT = "autoresponder.twofactor.recovery-code"
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read aloud, typed from paper


class InvalidCode(Exception):
    pass


# --- RFC 6238 -------------------------------------------------------------------------------


def hotp(key, counter, digits=DIGITS):
    """RFC 4226: the `digits`-digit code for `counter` under `key` (bytes), HMAC-SHA1."""
    digest = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    number = struct.unpack(">I", digest[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(number % 10**digits).zfill(digits)


def time_step(at=None):
    return int((time.time() if at is None else at) // STEP_SECONDS)


def decode_secret(secret):
    """Base32 text (as apps show it, without padding) to key bytes."""
    secret = secret.upper().replace(" ", "")
    return base64.b32decode(secret + "=" * (-len(secret) % 8))


def new_secret():
    """160 random bits, the key length RFC 4226 recommends, as base32 without padding."""
    return base64.b32encode(secrets.token_bytes(20)).decode("ascii").rstrip("=")


def matching_step(secret, code, *, at=None):
    """The time step whose code `code` is (within the drift), or None."""
    key, now = decode_secret(secret), time_step(at)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        if hmac.compare_digest(hotp(key, step), code):
            found = step  # keep looking: every candidate costs the same, whichever matched
    return found


# --- Enrolment -------------------------------------------------------------------------------


def device_of(user):
    return TwoFactor.objects.filter(user=user).first()


def is_enabled(user):
    return TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).exists()


def secret_of(device):
    """The plain secret, or None when ENCRYPTION_KEY changed since it was stored."""
    return crypto.decrypt(device.secret, purpose=SECRET_PURPOSE)


def start_enrolment(user):
    """A fresh, unconfirmed secret for `user`; replaces an unfinished one. Refused when already on."""
    if is_enabled(user):
        raise ValueError("Two-factor sign-in is already on. Turn it off first to set up another app.")
    secret = crypto.encrypt(new_secret(), purpose=SECRET_PURPOSE)
    device, _ = TwoFactor.objects.update_or_create(user=user, defaults={"secret": secret, "last_step": 0})
    return device


def provisioning_uri(user, secret):
    """The otpauth:// URI authenticator apps read from the QR code."""
    label = quote(f"{ISSUER}:{user.get_username()}", safe=":@")
    query = urlencode({"secret": secret, "issuer": ISSUER, "digits": DIGITS, "period": STEP_SECONDS})
    return f"otpauth://totp/{label}?{query}"


def qr_svg(uri):
    """The URI as an inline SVG QR code (attributes only, no style: fine under the CSP)."""
    return segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff", title="QR code for your authenticator app")


def confirm_enrolment(user, code, *, at=None):
    """Turn two-factor sign-in on once `code` matches the new secret; returns the recovery codes."""
    device = TwoFactor.objects.filter(user=user, confirmed_at__isnull=True).first()
    if device is None:
        raise InvalidCode("Start the set-up again: there is no new authenticator waiting for a code.")
    if not _accept_totp(device, normalize(code), at=at):
        raise InvalidCode("That code is not right. Type the six digits your app shows now.")
    with transaction.atomic():
        TwoFactor.objects.filter(pk=device.pk).update(confirmed_at=timezone.now())
        return new_recovery_codes(user)


def disable(user):
    """Turn two-factor sign-in off and forget the secret and recovery codes (also an owner's reset)."""
    with transaction.atomic():
        deleted, _ = TwoFactor.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
    return deleted > 0


# --- Sign-in -----------------------------------------------------------------------------------


def normalize(code):
    return "".join(str(code or "").split()).replace("-", "").lower()


def verify(user, code, *, at=None):
    """True when `code` is a fresh authenticator code or an unused recovery code of `user`.

    Either is used up by a successful check.
    """
    device = TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).first()
    code = normalize(code)
    if device is None or not code:
        return False
    if len(code) == DIGITS and code.isdigit():
        return _accept_totp(device, code, at=at)
    return use_recovery_code(user, code)


def _accept_totp(device, code, *, at=None):
    secret = secret_of(device)
    step = matching_step(secret, code, at=at) if secret and len(code) == DIGITS and code.isdigit() else None
    if step is None:
        return False
    # Only one request can move last_step past this step: a replayed code finds it already there.
    return TwoFactor.objects.filter(pk=device.pk, last_step__lt=step).update(
        last_step=step, last_used_at=timezone.now()) == 1


# --- Recovery codes ------------------------------------------------------------------------------


def _digest(code):
    return salted_hmac(RECOVERY_SALT, normalize(code), algorithm="sha256").hexdigest()


def _recovery_code():
    raw = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10))
    return f"{raw[:5]}-{raw[5:]}"


def new_recovery_codes(user):
    """Ten new recovery codes for `user`, replacing the old ones; only their digests are kept."""
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    with transaction.atomic():
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create(RecoveryCode(user=user, digest=_digest(c)) for c in codes)
    return codes


def use_recovery_code(user, code):
    return RecoveryCode.objects.filter(user=user, digest=_digest(code), used_at__isnull=True).update(
        used_at=timezone.now()) == 1


def recovery_codes_left(user):
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()
