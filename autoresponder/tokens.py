"""
Short signed tokens for public URLs: a message's open pixel, click
redirect and one-click unsubscribe, and a subscriber's preference centre
(lists.tokens).

Every message carries several of these, so they must be cheap to make and
short in the URL: the payload is a few integers (message id, link id …) as
varints, followed by a 16-byte MAC, in URL-safe base64 without padding —
about 30 characters. The MAC is keyed BLAKE2b (one C call, a third of what
HMAC-SHA256 costs here: nine tokens a message); its key is derived from
SECRET_KEY per purpose, so a click token is no unsubscribe token. Tokens
made before by HMAC-SHA256 truncated to 16 bytes, the same length, still
verify: they sit in mail already delivered. Tokens do not expire: the
endpoints behind them are idempotent, so a replay is harmless.

(This module was campaigns.tokens; the key labels keep that name, so the
tokens it made still verify.)
"""

import base64
import binascii
import hashlib
import hmac
import re

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

MAC_BYTES = 16
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+\Z")
_MAX_TOKEN = 200  # characters; a real token is about 30
# Per purpose, for the current SECRET_KEY (cleared when a test changes it): ten tokens a message,
# and reading settings.SECRET_KEY for each was a tenth of their cost.
_keys = {}  # purpose → the BLAKE2b key
_blake = {}  # purpose → a keyed BLAKE2b object to copy (its key block already hashed: one compression less)
_legacy = {}  # purpose → a keyed HMAC object to copy (tokens made before BLAKE2b)
_URLSAFE = bytes.maketrans(b"+/", b"-_")


class BadToken(ValueError):
    """The token was not made by us for this purpose."""


@receiver(setting_changed)
def _forget_keys(setting, **kwargs):
    if setting == "SECRET_KEY":
        _keys.clear()
        _blake.clear()
        _legacy.clear()


def sign(purpose, *values):
    """Return a token for the non-negative integers `values`, valid only for `purpose`."""
    payload = _encode(values)
    return _b64(payload + _mac(purpose, payload))


def unsign(purpose, token):
    """Return the integers signed into `token`; raise BadToken for anything else."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN or not _ALPHABET.match(token):
        raise BadToken("malformed token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("malformed token") from None
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if len(raw) < MAC_BYTES or _b64(raw) != token:  # one spelling per token
        raise BadToken("malformed token")
    if not hmac.compare_digest(mac, _mac(purpose, payload)) and not hmac.compare_digest(
            mac, _legacy_mac(purpose, payload)):
        raise BadToken("bad signature")
    return _decode(payload)


def _derived(purpose, label):
    if not purpose or not isinstance(purpose, str):
        raise ValueError("A token purpose is a non-empty string.")
    return hmac.new(settings.SECRET_KEY.encode(), label + purpose.encode(), hashlib.sha256).digest()


def key_for(purpose):
    """The 32-byte BLAKE2b key of `purpose`, derived from SECRET_KEY (kept per process)."""
    key = _keys.get(purpose)
    if key is None:
        key = _keys[purpose] = _derived(purpose, b"autoresponder.campaigns.tokens.blake2b:")
    return key


def _mac(purpose, payload):
    base = _blake.get(purpose)
    if base is None:
        base = _blake[purpose] = hashlib.blake2b(key=key_for(purpose), digest_size=MAC_BYTES)
    mac = base.copy()
    mac.update(payload)
    return mac.digest()


def _legacy_mac(purpose, payload):
    """The MAC of tokens made before BLAKE2b: HMAC-SHA256, truncated."""
    base = _legacy.get(purpose)
    if base is None:
        key = _derived(purpose, b"autoresponder.campaigns.tokens:")
        base = _legacy[purpose] = hmac.new(key, digestmod=hashlib.sha256)
    mac = base.copy()
    mac.update(payload)
    return mac.digest()[:MAC_BYTES]


def _b64(data):
    """URL-safe base64 without padding (binascii and a translation: a third of base64's cost here)."""
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_URLSAFE).decode("ascii")


def _encode(values):
    out = bytearray()
    for value in values:
        if type(value) is not int or value < 0:  # not bool either, nor an int subclass
            raise ValueError(f"Tokens carry non-negative integers, not {value!r}.")
        while value > 0x7F:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out)


def _decode(payload):
    values, value, shift = [], 0, 0
    for byte in payload:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            continue
        values.append(value)
        value, shift = 0, 0
    if shift:
        raise BadToken("truncated payload")
    return tuple(values)
