"""
Short signed tokens for the public per-message URLs: open pixel, click
redirect, one-click unsubscribe.

Every message carries several of these, so they must be cheap to make and
short in the URL: the payload is a few integers (message id, link id …) as
varints, followed by an HMAC-SHA256 truncated to 16 bytes, in URL-safe
base64 without padding — about 30 characters. The HMAC key is derived from
SECRET_KEY per purpose, so a click token is no unsubscribe token. Tokens do
not expire: the endpoints behind them are idempotent, so a replay is harmless.
"""

import base64
import binascii
import hashlib
import hmac
import re

from django.conf import settings

MAC_BYTES = 16
_ALPHABET = re.compile(r"[A-Za-z0-9_-]+\Z")
_MAX_TOKEN = 200  # characters; a real token is about 30
_macs = {}  # (secret key, purpose) → a keyed HMAC object to copy


class BadToken(ValueError):
    """The token was not made by us for this purpose."""


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
    if not hmac.compare_digest(mac, _mac(purpose, payload)):
        raise BadToken("bad signature")
    return _decode(payload)


def _mac(purpose, payload):
    secret = settings.SECRET_KEY
    base = _macs.get((secret, purpose))
    if base is None:
        if not purpose or not isinstance(purpose, str):
            raise ValueError("A token purpose is a non-empty string.")
        key = hmac.new(secret.encode(), b"autoresponder.campaigns.tokens:" + purpose.encode(),
                       hashlib.sha256).digest()
        base = _macs[(secret, purpose)] = hmac.new(key, digestmod=hashlib.sha256)
    mac = base.copy()
    mac.update(payload)
    return mac.digest()[:MAC_BYTES]


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _encode(values):
    out = bytearray()
    for value in values:
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
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
