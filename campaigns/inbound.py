"""
Mail that comes back: bounces, complaints and mailto unsubscribes, read from a
mailbox over IMAP or POP3.

Every message we send over SMTP carries its own signed return path (VERP):
`bounces+<token>@BOUNCE_DOMAIN`, where the token is the ledger id with an HMAC
(autoresponder.tokens), spelled in lower-case base32 because mail systems may change
the case of an address. A bounce is sent to that address, so it names its
message even when the remote server quotes nothing of the original; a forged
report without a valid token names nothing and changes nothing. The
List-Unsubscribe mailto address is sub-addressed the same way
(`unsubscribe+<token>@…`), so an unsubscribe mail names its recipient without
trusting the From header.

`read_mailbox()` (a beat task, every BOUNCE_MAILBOX_SECONDS) fetches what is
waiting at BOUNCE_MAILBOX_URL — `imaps://user:password@host:993/INBOX` (or
imap://, with STARTTLS when offered; pop3s://, pop3://) — handles each mail,
and deletes what it understood (or, with `?processed=Folder` on an IMAP URL,
moves it there). Mail it does not understand (a human's reply, an
auto-responder) is left in the mailbox, marked as read, for a person to look at.
Handling is idempotent (events have uids), so a crash mid-pass only means some
mail is read again.
"""

import base64
import binascii
import imaplib
import logging
import poplib
import re
import ssl
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from django.conf import settings

from autoresponder import tokens

from . import bounces, composing, events, policy
from .models import Event

log = logging.getLogger(__name__)

BOUNCE, UNSUBSCRIBE_MAIL = "bounce", "unsubscribe-mail"
_TOKENED = re.compile(r"^[^@+]+\+([a-z2-7]{20,60})@", re.IGNORECASE)
_MESSAGE_ID = re.compile(r"^<?([A-Za-z0-9_-]{10,200})@")
TIMEOUT = 30


# --- Signed addresses ---------------------------------------------------------------------------


def address_token(purpose, message_pk):
    """The ledger id, signed for `purpose`, as lower-case base32 (case-proof in an address)."""
    signed = tokens.sign(purpose, message_pk)
    raw = base64.urlsafe_b64decode(signed + "=" * (-len(signed) % 4))
    return base64.b32encode(raw).decode("ascii").rstrip("=").lower()


def message_pk_from_address(purpose, address):
    """The ledger id in a `local+token@domain` address signed for `purpose`, or None."""
    found = _TOKENED.match((address or "").strip().strip("<>"))
    if not found:
        return None
    text = found.group(1).upper()
    try:
        raw = base64.b32decode(text + "=" * (-len(text) % 8))
        if base64.b32encode(raw).decode("ascii").rstrip("=") != text:
            return None  # one spelling per token: the unused low bits must be zero
        values = tokens.unsign(purpose, base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="))
    except (binascii.Error, ValueError):
        return None
    return values[0] if len(values) == 1 else None


def return_path(message_pk):
    """The VERP envelope sender of one message ('' when BOUNCE_DOMAIN is not set)."""
    if not settings.BOUNCE_DOMAIN:
        return ""
    return f"{settings.BOUNCE_LOCAL_PART}+{address_token(BOUNCE, message_pk)}@{settings.BOUNCE_DOMAIN}"


def unsubscribe_mailto(message_pk):
    """The List-Unsubscribe mailto address of one message ('' when mail unsubscribes are not read).

    UNSUBSCRIBE_MAILTO, sub-addressed with the message's token when the bounce mailbox is read;
    without UNSUBSCRIBE_MAILTO, unsubscribe+<token>@BOUNCE_DOMAIN."""
    base = settings.UNSUBSCRIBE_MAILTO
    if not settings.BOUNCE_MAILBOX_URL:
        return base
    if not base and settings.BOUNCE_DOMAIN:
        base = f"unsubscribe@{settings.BOUNCE_DOMAIN}"
    if not base or "@" not in base:
        return base
    local, _, domain = base.rpartition("@")
    return f"{local.split('+')[0]}+{address_token(UNSUBSCRIBE_MAIL, message_pk)}@{domain}"


def message_pk_from_message_id(value):
    """The ledger id in one of our Message-IDs (`<signed id@MESSAGE_ID_DOMAIN>`), or None."""
    found = _MESSAGE_ID.match((value or "").strip())
    if not found:
        return None
    try:
        values = tokens.unsign(composing.MESSAGE_ID, found.group(1))
    except tokens.BadToken:
        return None
    return values[0] if len(values) == 1 else None


# --- One returned mail ------------------------------------------------------------------------------


@dataclass
class Outcome:
    understood: bool = False
    actions: list = field(default_factory=list)


_KIND = {
    bounces.HARD_BOUNCE: Event.BOUNCE, bounces.SOFT_BOUNCE: Event.SOFT_BOUNCE,
    bounces.DEFERRED: Event.DEFERRED, bounces.COMPLAINT: Event.COMPLAINT,
}


def handle(raw):
    """Act on one mail from the bounce mailbox; returns an Outcome (understood: safe to delete)."""
    unsubscribe_pk = _unsubscribe_request(raw)
    if unsubscribe_pk is not None:
        return _unsubscribe(unsubscribe_pk)
    outcome = Outcome()
    for report in bounces.parse(raw):
        message = policy.message_by_pk(_message_pk(report))
        if message is None:
            log.info("A %s report names no message of ours (recipient %r); left in the mailbox.",
                     report.kind, report.recipient)
            continue
        uid = events.event_uid("mailbox", report.report_id or report.detail, message.pk, report.kind)
        outcome.actions += policy.feedback(
            _KIND[report.kind], message=message, uid=uid, source="mailbox", detail=report.detail,
        )
        outcome.understood = True
    return outcome


def _message_pk(report):
    for address in report.return_paths:
        pk = message_pk_from_address(BOUNCE, address)
        if pk:
            return pk
    for value in report.message_ids:
        pk = message_pk_from_message_id(value)
        if pk:
            return pk
    return None


def _unsubscribe_request(raw):
    """The ledger id when this mail was sent to one of our tokened unsubscribe addresses."""
    import email
    import email.policy
    from email.utils import getaddresses

    message = email.message_from_bytes(raw[:65536], policy=email.policy.compat32)
    headers = []
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        headers += message.get_all(name) or []
    for _, address in getaddresses(headers):
        pk = message_pk_from_address(UNSUBSCRIBE_MAIL, address)
        if pk:
            return pk
    return None


def _unsubscribe(message_pk):
    from .tracking import unsubscribe_recipient

    message = policy.message_by_pk(message_pk)
    if message is None:
        return Outcome(understood=True)
    changed = unsubscribe_recipient(message, reason="Unsubscribe by mail (List-Unsubscribe mailto)")
    if changed:
        events.record(Event.UNSUBSCRIBE, message.pk, uid=events.event_uid("unsubscribe", message.pk),
                      source="mailto")
    return Outcome(understood=True, actions=[f"{message.email} unsubscribed ({changed} list(s))."] if changed else [])


# --- Mailboxes --------------------------------------------------------------------------------------


@dataclass
class MailboxURL:
    scheme: str
    host: str
    port: int
    username: str
    password: str
    folder: str = "INBOX"
    processed: str = ""  # IMAP: move understood mail here instead of deleting it

    @classmethod
    def parse(cls, url):
        parts = urlsplit(url)
        defaults = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
        if parts.scheme not in defaults:
            raise ValueError("BOUNCE_MAILBOX_URL must start with imaps://, imap://, pop3s:// or pop3://")
        if not parts.hostname:
            raise ValueError("BOUNCE_MAILBOX_URL has no host name.")
        query = parse_qs(parts.query)
        return cls(
            scheme=parts.scheme, host=parts.hostname, port=parts.port or defaults[parts.scheme],
            username=unquote(parts.username or ""), password=unquote(parts.password or ""),
            folder=unquote(parts.path.lstrip("/")) or "INBOX", processed=(query.get("processed") or [""])[0],
        )


class IMAPMailbox:
    """Reads with BODY.PEEK (nothing is marked read before it is handled); deletes or moves
    what was understood and marks the rest read, so the next pass skips it."""

    def __init__(self, url):
        self.url = url
        self.conn = None

    def __enter__(self):
        u = self.url
        if u.scheme == "imaps":
            self.conn = imaplib.IMAP4_SSL(u.host, u.port, ssl_context=ssl.create_default_context(), timeout=TIMEOUT)
        else:
            self.conn = imaplib.IMAP4(u.host, u.port, timeout=TIMEOUT)
            if "STARTTLS" in self.conn.capabilities:
                self.conn.starttls(ssl_context=ssl.create_default_context())
        self.conn.login(u.username, u.password)
        _ok(self.conn.select(_quoted(u.folder)), f"select {u.folder}")
        return self

    def __exit__(self, *exc):
        try:
            self.conn.expunge()
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def waiting(self, limit):
        data = _ok(self.conn.uid("SEARCH", None, "UNSEEN"), "search")
        return [uid.decode() for uid in (data[0] or b"").split()][:limit]

    def fetch(self, uid):
        data = _ok(self.conn.uid("FETCH", uid, "(BODY.PEEK[])"), f"fetch {uid}")
        for item in data:
            if isinstance(item, tuple) and len(item) == 2:
                return item[1]
        return None

    def done(self, uid):
        if self.url.processed:
            _ok(self.conn.uid("COPY", uid, _quoted(self.url.processed)), f"copy {uid}")
        _ok(self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted \Seen)"), f"delete {uid}")

    def keep(self, uid):
        _ok(self.conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Seen)"), f"mark {uid} read")


class POP3Mailbox:
    """POP3 has no flags: mail not understood stays, and is remembered (by UIDL, in the
    cache for a week) so the next passes skip it."""

    def __init__(self, url):
        self.url = url
        self.conn = None
        self.numbers = {}

    def __enter__(self):
        u = self.url
        if u.scheme == "pop3s":
            self.conn = poplib.POP3_SSL(u.host, u.port, context=ssl.create_default_context(), timeout=TIMEOUT)
        else:
            self.conn = poplib.POP3(u.host, u.port, timeout=TIMEOUT)
            try:
                self.conn.stls(context=ssl.create_default_context())
            except poplib.error_proto:
                pass  # the server offers no STLS
        self.conn.user(u.username)
        self.conn.pass_(u.password)
        return self

    def __exit__(self, *exc):
        try:
            self.conn.quit()  # deletions take effect here
        except (poplib.error_proto, OSError):
            pass

    def waiting(self, limit):
        from django.core.cache import cache

        _, lines, _ = self.conn.uidl()
        for line in lines:
            number, uid = line.decode().split()[:2]
            self.numbers[uid] = number
        kept = cache.get_many([self._kept_key(uid) for uid in self.numbers])
        return [uid for uid in self.numbers if self._kept_key(uid) not in kept][:limit]

    def fetch(self, uid):
        _, lines, _ = self.conn.retr(self.numbers[uid])
        return b"\r\n".join(lines) + b"\r\n"

    def done(self, uid):
        self.conn.dele(self.numbers[uid])

    def keep(self, uid):
        from django.core.cache import cache

        cache.set(self._kept_key(uid), 1, timeout=7 * 86400)

    def _kept_key(self, uid):
        return f"campaigns:pop3-kept:{self.url.host}:{self.url.username}:{uid}"


def _ok(result, what):
    status, data = result
    if status != "OK":
        raise imaplib.IMAP4.error(f"IMAP {what} failed: {data!r}")
    return data


def _quoted(folder):
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


@contextmanager
def open_mailbox(url):
    parsed = MailboxURL.parse(url)
    box = (IMAPMailbox if parsed.scheme.startswith("imap") else POP3Mailbox)(parsed)
    with box:
        yield box


@dataclass
class Pass:
    read: int = 0
    understood: int = 0
    kept: int = 0
    actions: list = field(default_factory=list)


def read_mailbox(url=None, *, limit=500):
    """Handle up to `limit` waiting mails; returns a Pass with the counts and what was done."""
    url = url or settings.BOUNCE_MAILBOX_URL
    result = Pass()
    if not url:
        return result
    with open_mailbox(url) as box:
        for uid in box.waiting(limit):
            raw = box.fetch(uid)
            result.read += 1
            outcome = handle(raw) if raw else Outcome()
            result.actions += outcome.actions
            if outcome.understood:
                box.done(uid)
                result.understood += 1
            else:
                box.keep(uid)
                result.kept += 1
    return result
