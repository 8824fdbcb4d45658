"""
Secrets at rest: backend passwords, API keys and DKIM private keys.

They are encrypted with Fernet (AES-128-CBC plus HMAC-SHA256) under a key
derived with HKDF from settings.ENCRYPTION_KEY, which lives in the environment
and never in the database: a stolen database dump alone reveals no credential.
Changing ENCRYPTION_KEY makes stored secrets unreadable; they then read as ""
and the backend must be given its credentials again (the admin says so).
"""

import base64
import functools
import logging

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

log = logging.getLogger(__name__)

PREFIX = "fernet:"


@functools.lru_cache(maxsize=4)
def _fernet(secret):
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"autoresponder.campaigns.fields", info=b"secret fields"
    ).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(plain):
    if not plain:
        return ""
    return PREFIX + _fernet(settings.ENCRYPTION_KEY).encrypt(plain.encode()).decode()


def decrypt(stored):
    if not stored:
        return ""
    if not stored.startswith(PREFIX):
        raise ValueError("This value was not written by EncryptedTextField.")
    try:
        return _fernet(settings.ENCRYPTION_KEY).decrypt(stored[len(PREFIX):].encode()).decode()
    except InvalidToken:
        log.error("A stored secret cannot be decrypted: ENCRYPTION_KEY changed since it was saved.")
        return ""


class EncryptedTextField(models.TextField):
    """A text column holding a Fernet token; Python code only ever sees the plain text."""

    def from_db_value(self, value, expression, connection):
        return decrypt(value)

    def get_prep_value(self, value):
        return encrypt(super().get_prep_value(value) or "")
