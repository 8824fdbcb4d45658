"""
The local outbox: on embedded defaults (EMAIL_URL=outbox://) outgoing mail is
written as .eml files to DATA_DIR/outbox instead of leaving the machine, and
the dashboard lists them so a first-time user can read what was sent.
"""

import email
import email.policy
import os
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.core.mail.backends.base import BaseEmailBackend

_NAME = re.compile(r"^[0-9]{20}-[0-9a-f]{32}\.eml$")


def outbox_dir():
    return Path(settings.OUTBOX_DIR)


def write(raw: bytes) -> str:
    """Store one raw RFC 5322 message; returns its outbox name."""
    folder = outbox_dir()
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{uuid.uuid4().hex}.eml"
    tmp = folder / f".{name}.tmp"
    tmp.write_bytes(raw)
    os.replace(tmp, folder / name)  # readers never see half a message
    return name


class OutboxBackend(BaseEmailBackend):
    """A Django email backend that writes each message to the outbox."""

    def send_messages(self, email_messages):
        sent = 0
        for message in email_messages:
            write(message.message().as_bytes(linesep="\r\n"))
            sent += 1
        return sent


@dataclass
class OutboxEntry:
    name: str
    sent_at: datetime
    size: int

    @property
    def path(self):
        return outbox_dir() / self.name

    def parsed(self):
        with open(self.path, "rb") as fh:
            return email.message_from_binary_file(fh, policy=email.policy.default)


def entries(limit=100):
    """The newest `limit` messages, newest first."""
    folder = outbox_dir()
    if not folder.is_dir():
        return []
    names = sorted((n for n in os.listdir(folder) if _NAME.match(n)), reverse=True)[:limit]
    return [_entry(n) for n in names]


def count():
    folder = outbox_dir()
    return sum(1 for n in os.listdir(folder) if _NAME.match(n)) if folder.is_dir() else 0


def get(name):
    """One message by name, or None; names are checked so no path escapes the outbox."""
    if not _NAME.match(name) or not (outbox_dir() / name).is_file():
        return None
    return _entry(name)


def _entry(name):
    ns = int(name.split("-", 1)[0])
    size = (outbox_dir() / name).stat().st_size
    return OutboxEntry(name=name, sent_at=datetime.fromtimestamp(ns / 1e9, tz=timezone.utc), size=size)


def parts(message):
    """(text, html) bodies of a parsed message; either may be ''."""
    text = html = ""
    for part in message.walk():
        if part.is_multipart() or part.get_content_disposition() == "attachment":
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain" and not text:
            text = part.get_content()
        elif ctype == "text/html" and not html:
            html = part.get_content()
    return text, html
