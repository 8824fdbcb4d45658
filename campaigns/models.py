"""Sending: backends, templates, broadcasts, sequences, the message ledger."""

from django.db import models  # noqa: F401
