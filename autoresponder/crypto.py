"""
Small secrets at rest for the project package (two-factor secrets).

Fernet (AES-128-CBC plus HMAC-SHA256) under a key derived with HKDF from
settings.ENCRYPTION_KEY, with a separate key per purpose: a stolen database dump
alone reveals no secret, and one purpose's ciphertext never decrypts as another's.
Changing ENCRYPTION_KEY makes stored secrets unreadable (decrypt() returns None),
so the owner of each one must set it up again.
"""

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings


@functools.lru_cache(maxsize=8)
def _fernet(secret, purpose):
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"autoresponder.crypto", info=purpose.encode()).derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plain, *, purpose):
    """A Fernet token (text) for `plain`, bound to `purpose`."""
    return _fernet(settings.ENCRYPTION_KEY, purpose).encrypt(plain.encode()).decode("ascii")


def decrypt(token, *, purpose):
    """The plain text, or None when the token is damaged or the key changed."""
    try:
        return _fernet(settings.ENCRYPTION_KEY, purpose).decrypt(token.encode("ascii")).decode()
    except (InvalidToken, UnicodeEncodeError, ValueError):
        return None
