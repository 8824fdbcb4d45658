"""
Transports: how one batch of messages leaves, over one connection.

- `SMTPTransport` keeps one SMTP connection open for the batch and speaks
  MAIL/RCPT/DATA itself, so every recipient gets its own reply code and a
  message needs no second pass for dot-stuffing unless it has a line starting
  with a dot.
- `AnymailTransport` sends through django-anymail's ESP backends over one HTTP
  session (one boto3 client for SES), with our ledger id in the metadata so
  webhook events map back to the ledger.
- `OutboxTransport` writes to the local outbox (embedded defaults).

Every reply becomes an `Outcome` whose `kind` tells the pipeline what to do:
sent, retry (4xx, network), bounce (5.1.x: failed and suppressed), policy
(5.7.x: counted towards pausing the broadcast) or failed (other 5xx).
`Unreachable` is raised when nothing could be sent at all (connection refused,
timeout, login refused): the batch goes back to the queue untouched and the
backend's failure counter moves towards failover.
"""

import re
import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import NamedTuple

from django.conf import settings

from autoresponder import outbox

SENT, RETRY, BOUNCE, POLICY, FAILED = "sent", "retry", "bounce", "policy", "failed"
SMTP_TIMEOUT = 30

_ENHANCED = re.compile(r"^\s*(?:\d{3}[ -])?([245])\.(\d{1,3})\.(\d{1,3})\b")
# RFC 3463 subject codes of permanent failures that we act on; others simply fail.
_PERMANENT_BY_SUBJECT = {"1": BOUNCE, "7": POLICY}
# Without an enhanced code, these RCPT replies mean the mailbox does not exist (RFC 5321 4.2.3).
_BOUNCE_CODES = {550, 551, 553}


class Unreachable(Exception):
    """Nothing was sent: the backend could not be reached or refused our credentials."""


class Outcome(NamedTuple):
    kind: str
    response: str
    provider_id: str = ""
    network: bool = False  # a connection-level problem (counts towards failover)


@dataclass
class Envelope:
    """One message, rendered; `raw` is the signed RFC 5322 bytes for SMTP and outbox."""

    ledger_id: int
    from_name: str
    from_email: str
    to_email: str
    subject: str
    html: str
    text: str
    message_id: str
    reply_to: str = ""
    to_name: str = ""
    headers: dict = field(default_factory=dict)
    tags: list = field(default_factory=list)
    raw: bytes = b""
    # SMTP envelope sender (MAIL FROM): the message's signed bounce address when
    # BOUNCE_DOMAIN is set (campaigns.inbound.return_path), else from_email.
    return_path: str = ""

    @property
    def mail_from(self):
        return self.return_path or self.from_email


def classify(code, text, *, stage="data"):
    """The Outcome kind of an SMTP reply (code, text)."""
    if 200 <= code < 300:
        return SENT
    if 400 <= code < 500:
        return RETRY
    enhanced = _ENHANCED.match(text or "")
    if enhanced and enhanced.group(1) == "5":
        return _PERMANENT_BY_SUBJECT.get(enhanced.group(2), FAILED)
    if stage == "rcpt" and code in _BOUNCE_CODES:
        return BOUNCE
    return FAILED


def _reply_text(code, message):
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)
    return f"{code} {text}".strip()[:1000]


class OneStep:
    """submit()/collect() for transports that send a message in one call (ESPs, the outbox)."""

    _outcome = None

    def submit(self, envelope, chain=None):
        self._outcome = self.send(envelope)

    def collect(self):
        return self._outcome

    def abandon(self):
        """Nothing is half-sent between messages."""


class SMTPTransport:
    """One SMTP connection for a batch; reconnects if the server drops it mid-batch.

    A message goes out in two steps so the worker never idles while the server
    works: `submit(envelope, chain=next_envelope_addresses)` writes the body and,
    when the server offers PIPELINING (RFC 2920), the next message's MAIL, RCPT
    and DATA in the same write; the caller then renders the next message while
    the server answers; `collect()` reads the outcome. One round trip per message.
    A chained transaction stays open (after DATA) until its body follows; if the
    batch stops first, `abandon()` drops the connection, so the server discards it.
    """

    wants_raw = True

    def __init__(self, backend, *, timeout=SMTP_TIMEOUT):
        self.backend = backend
        self.timeout = timeout
        self.conn = None
        self.pipelining = False
        self._outcome = None
        self._chained = None  # the next recipient whose MAIL/RCPT/DATA went with the last body
        self._pending = None  # (recipient, replies) read for it by collect()

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()

    def open(self):
        b = self.backend
        try:
            if b.security == b.TLS:
                conn = smtplib.SMTP_SSL(b.host, b.smtp_port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                conn = smtplib.SMTP(b.host, b.smtp_port, timeout=self.timeout)
            conn.ehlo(settings.MESSAGE_ID_DOMAIN or socket.getfqdn())
            if b.security == b.STARTTLS:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo(settings.MESSAGE_ID_DOMAIN or socket.getfqdn())
            if b.username:
                conn.login(b.username, b.password)
        except (OSError, smtplib.SMTPException) as exc:
            raise Unreachable(f"{b.host}:{b.smtp_port}: {exc}") from exc
        self.conn = conn
        self.pipelining = conn.has_extn("pipelining")
        self._chained = self._pending = None

    def close(self):
        if self.conn is not None and self._pending is None:
            try:
                self.conn.quit()
            except (OSError, smtplib.SMTPException):
                pass
        self._drop()

    def abandon(self):
        if self._pending is not None or self._chained is not None:
            self._drop()

    def send(self, envelope):
        """Submit and collect one message (no chaining)."""
        self.submit(envelope)
        return self.collect()

    def submit(self, envelope, chain=None):
        self._outcome, self._chained = None, None
        if self.conn is None:
            self.open()  # after a dropped connection; Unreachable ends the batch
        try:
            pending, self._pending = self._pending, None
            if pending and pending[0] == envelope.to_email:
                replies = pending[1]
            else:
                if pending:  # cannot happen in order; never send a body into someone else's transaction
                    self._drop()
                    self.open()
                replies = self._start(envelope)
            self._outcome = self._refusal(replies)
            if self._outcome is None:
                data = _stuffed(envelope.raw) + b".\r\n"
                if chain is not None and self.pipelining:
                    data += self._commands(*chain)
                    self._chained = chain[1]
                self.conn.send(data)
        except (OSError, smtplib.SMTPException) as exc:
            self._lost(exc)

    def collect(self):
        if self._outcome is not None:
            return self._outcome
        try:
            code, message = self.conn.getreply()
            text = _reply_text(code, message)
            if code == 421:
                self._drop()
            elif self._chained is not None:
                self._pending = (self._chained, self._replies(3))
            return Outcome(classify(code, text), text)
        except (OSError, smtplib.SMTPException) as exc:
            self._lost(exc)
            return self._outcome
        finally:
            self._chained = None

    def _lost(self, exc):
        # The final reply to DATA never came: like an MTA, we retry (RFC 5321 6.1).
        self._drop()
        self._outcome = Outcome(RETRY, f"Network error: {exc}"[:1000], network=True)

    def _commands(self, from_email, to_email):
        # campaigns.mime writes 7bit and quoted-printable only, so no BODY=8BITMIME is needed.
        return f"MAIL FROM:<{_ascii(from_email)}>\r\nRCPT TO:<{_ascii(to_email)}>\r\nDATA\r\n".encode()

    def _start(self, envelope):
        """MAIL, RCPT, DATA for `envelope`: pipelined in one write when offered, else one by one."""
        if self.pipelining:
            self.conn.send(self._commands(envelope.mail_from, envelope.to_email))
            return self._replies(3)
        replies = []
        for command in self._commands(envelope.mail_from, envelope.to_email).decode().split("\r\n")[:3]:
            replies.append(self.conn.docmd(command))
            if replies[-1][0] >= 400:
                break
        return replies

    def _replies(self, count):
        replies = []
        for _ in range(count):
            replies.append(self.conn.getreply())
            if replies[-1][0] == 421:  # the server is closing the connection
                break
        return replies

    def _refusal(self, replies):
        """None when MAIL, RCPT and DATA were accepted; else the Outcome, with the session reset."""
        for (code, message), stage, ok in zip(replies, ("mail", "rcpt", "data"), ((250,), (250, 251), (354,))):
            if code not in ok:
                break
        else:
            if len(replies) == 3:
                return None
        text = _reply_text(code, message)
        if code == 421:
            self._drop()
            return Outcome(RETRY, text)
        if replies[-1][0] == 354:
            self.conn.send(b".\r\n")  # a lenient server opened DATA anyway: send nothing
            self.conn.getreply()
        try:
            self.conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()
        return Outcome(classify(code, text, stage=stage), text)

    def _drop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        self._chained = self._pending = None


def _stuffed(raw):
    if raw.startswith(b".") or b"\n." in raw:  # dot-stuffing only when a line starts with a dot
        raw = (b"." + raw if raw.startswith(b".") else raw).replace(b"\n.", b"\n..")
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def _ascii(email):
    """The address for SMTP commands: IDNA domain, and nothing that could end the command."""
    from . import mime

    address = mime.format_address("", email)
    if any(c in address for c in "<> \r\n"):
        raise ValueError(f"{email!r} cannot be used in an SMTP command.")
    return address


class OutboxTransport(OneStep):
    wants_raw = True

    def __init__(self, backend):
        self.backend = backend

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def send(self, envelope):
        name = outbox.write(envelope.raw)
        return Outcome(SENT, "Written to the local outbox", provider_id=name)


# Anymail backend path and the kwargs it takes from our fields, per ESP.
_ESP_PATHS = {
    "amazon_ses": "anymail.backends.amazon_ses.EmailBackend",
    "mandrill": "anymail.backends.mandrill.EmailBackend",
    "sendgrid": "anymail.backends.sendgrid.EmailBackend",
    "postmark": "anymail.backends.postmark.EmailBackend",
    "mailgun": "anymail.backends.mailgun.EmailBackend",
    "brevo": "anymail.backends.brevo.EmailBackend",
}
# Options an ESP accepts from `esp_options` (anymail setting names, lower case).
_ESP_OPTIONS = {
    "mailgun": ("sender_domain", "api_url"),
    "postmark": ("message_stream", "api_url"),
    "sendgrid": ("api_url",),
    "mandrill": ("api_url",),
    "brevo": ("api_url",),
    "amazon_ses": ("configuration_set_name",),
}


def anymail_kwargs(backend):
    """Keyword arguments for django.core.mail.get_connection() for an ESP backend."""
    options = {k: v for k, v in (backend.esp_options or {}).items() if k in _ESP_OPTIONS[backend.kind]}
    if backend.kind == backend.AMAZON_SES:
        session = {"region_name": (backend.esp_options or {}).get("region", "us-east-1")}
        if backend.api_key:
            session.update(aws_access_key_id=backend.api_key, aws_secret_access_key=backend.api_secret)
        return {"session_params": session, **options}
    if backend.kind == backend.POSTMARK:
        return {"server_token": backend.api_key, **options}
    return {"api_key": backend.api_key, **options}


class AnymailTransport(OneStep):
    """An ESP through django-anymail, one HTTP session for the batch."""

    wants_raw = False

    def __init__(self, backend, *, timeout=SMTP_TIMEOUT):
        from django.core.mail import get_connection

        self.backend = backend
        self.connection = get_connection(
            _ESP_PATHS[backend.kind], fail_silently=False, timeout=timeout, **anymail_kwargs(backend)
        )

    def __enter__(self):
        try:
            self.connection.open()
        except Exception as exc:  # boto3/requests raise many types; none of them sent anything
            raise Unreachable(f"{self.backend.get_kind_display()}: {exc}") from exc
        return self

    def __exit__(self, *exc):
        self.connection.close()

    def send(self, envelope):
        from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused

        message = self._message(envelope)
        try:
            message.send()
        except AnymailRecipientsRefused as exc:
            return Outcome(BOUNCE, f"Refused by {self.backend.get_kind_display()}: {exc}"[:1000])
        except AnymailAPIError as exc:
            return _api_error_outcome(exc)
        status = message.anymail_status
        text = f"Accepted by {self.backend.get_kind_display()} ({', '.join(sorted(status.status or []))})"
        return Outcome(SENT, text, provider_id=str(status.message_id or "")[:255])

    def _message(self, envelope):
        from anymail.message import AnymailMessage

        message = AnymailMessage(
            subject=envelope.subject,
            body=envelope.text,
            from_email=_address(envelope.from_name, envelope.from_email),
            to=[_address(envelope.to_name, envelope.to_email)],
            reply_to=[envelope.reply_to] if envelope.reply_to else None,
            headers={"Message-ID": envelope.message_id, **envelope.headers},
            connection=self.connection,
            metadata={"ledger_id": str(envelope.ledger_id)},
            tags=envelope.tags,
            # We rewrite links and add our own pixel when the broadcast asks for it.
            track_clicks=False,
            track_opens=False,
        )
        message.attach_alternative(envelope.html, "text/html")
        return message


def _address(name, email):
    from email.headerregistry import Address

    return str(Address(display_name=name or "", addr_spec=email))


def _api_error_outcome(exc):
    import requests

    status = getattr(exc, "status_code", None)
    text = f"{exc}"[:1000]
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return Outcome(RETRY, text, network=True)
    if status in (401, 403):
        return Outcome(RETRY, f"The ESP refused our credentials: {text}"[:1000], network=True)
    if status is None or status == 429 or status >= 500:
        return Outcome(RETRY, text)
    return Outcome(FAILED, text)


def transport_for(backend):
    if backend.kind == backend.SMTP:
        return SMTPTransport(backend)
    if backend.kind == backend.OUTBOX:
        return OutboxTransport(backend)
    return AnymailTransport(backend)


# --- Check connection ("test connection" in the admin) -----------------------------

# A read-only API call per ESP that fails with wrong credentials: (method, url, auth style).
_ESP_CHECKS = {
    "sendgrid": ("GET", "https://api.sendgrid.com/v3/scopes", "bearer"),
    "postmark": ("GET", "https://api.postmarkapp.com/server", "postmark"),
    "mandrill": ("POST", "https://mandrillapp.com/api/1.0/users/ping2", "mandrill"),
    "brevo": ("GET", "https://api.brevo.com/v3/account", "brevo"),
    "mailgun": ("GET", "https://api.mailgun.net/v3/domains", "mailgun"),
}


def check_connection(backend):
    """Reach the backend without sending anything: (ok, plain-language message)."""
    try:
        if backend.kind == backend.SMTP:
            with SMTPTransport(backend, timeout=10) as transport:
                transport.conn.noop()
            return True, f"Connected to {backend.host}:{backend.smtp_port}" + (" and signed in." if backend.username else ".")
        if backend.kind == backend.OUTBOX:
            outbox.outbox_dir().mkdir(parents=True, exist_ok=True)
            return True, "The local outbox is writable."
        if backend.kind == backend.AMAZON_SES:
            return _check_ses(backend)
        return _check_esp(backend)
    except Unreachable as exc:
        return False, f"Could not connect: {exc}"


def _check_esp(backend):
    import requests

    method, url, style = _ESP_CHECKS[backend.kind]
    url = (backend.esp_options or {}).get("check_url", url)
    key = backend.api_key
    kwargs = {
        "bearer": {"headers": {"Authorization": f"Bearer {key}"}},
        "postmark": {"headers": {"X-Postmark-Server-Token": key, "Accept": "application/json"}},
        "mandrill": {"json": {"key": key}},
        "brevo": {"headers": {"api-key": key, "Accept": "application/json"}},
        "mailgun": {"auth": ("api", key)},
    }[style]
    try:
        response = requests.request(method, url, timeout=10, **kwargs)
    except requests.RequestException as exc:
        return False, f"Could not reach {backend.get_kind_display()}: {exc}"
    if response.status_code in (401, 403):
        return False, f"{backend.get_kind_display()} refused the API key (HTTP {response.status_code}). Check it and save it again."
    if response.status_code >= 400:
        return False, f"{backend.get_kind_display()} answered HTTP {response.status_code}: {response.text[:200]}"
    return True, f"{backend.get_kind_display()} accepted the API key."


def _check_ses(backend):
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return False, "Amazon SES needs the boto3 package: pip install boto3"
    session = boto3.session.Session(**anymail_kwargs(backend)["session_params"])
    try:
        account = session.client("sesv2").get_account()
    except (BotoCoreError, ClientError) as exc:
        return False, f"Amazon SES refused: {exc}"
    quota = account.get("SendQuota", {})
    return True, f"Amazon SES answered: {int(quota.get('Max24HourSend', 0))} messages per 24 h allowed."
