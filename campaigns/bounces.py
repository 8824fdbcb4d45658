"""
Reading what comes back: delivery status notifications (RFC 3464), feedback-loop
complaints (ARF, RFC 5965) and the odd bounce that follows neither.

`parse(raw)` turns one returned mail into a list of `Report`s: what happened
(a hard or soft bounce, a delay, a complaint), to which address, with the
status code and the remote server's words, plus every clue that can name the
message it is about — the address the report was sent to (our VERP return
path), the ARF Original-Mail-From, and the Message-ID of the returned original.
Mapping those clues to ledger rows is campaigns.inbound's job; deciding what to
do about them is campaigns.policy's. Nothing here touches the database.
"""

import email
import email.message
import email.parser
import email.policy
import re
from dataclasses import dataclass, field
from email.utils import getaddresses

HARD_BOUNCE, SOFT_BOUNCE, DEFERRED, COMPLAINT = "bounce", "soft_bounce", "deferred", "complaint"

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Permanent failures that say the address itself is bad (RFC 3463): 5.1.x bad mailbox or
# domain, 5.2.1 mailbox disabled, 5.4.4 no route to the domain (usually no MX at all), and
# 5.0.0, which many servers use for "user unknown". Other 5.x.x failures (mailbox full,
# message too big, policy or spam blocks, system trouble) are not the address's fault:
# they count as soft bounces, which the policy suppresses only when they repeat.
_HARD_STATUS = re.compile(r"^5\.(1\.\d{1,3}|2\.1|4\.4|0\.0)$")
# ARF feedback types that are complaints; "not-spam" and "other" are not acted on.
_COMPLAINT_TYPES = {"abuse", "fraud", "virus", "auth-failure"}
# Headers a receiving server records the envelope recipient in, most trustworthy first.
_RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_FALLBACK_SUBJECT = re.compile(
    r"undeliver|delivery (status|failure|has failed)|returned mail|failure notice|mail delivery failed"
    r"|could not be delivered|non[- ]?delivery",
    re.IGNORECASE,
)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
_MAX_TEXT = 2000


@dataclass
class Report:
    """One thing a returned mail says about one recipient."""

    kind: str  # HARD_BOUNCE, SOFT_BOUNCE, DEFERRED or COMPLAINT
    recipient: str = ""  # the address the original was sent to, when the report names it
    status: str = ""  # RFC 3463 code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's reply, or the feedback type and agent
    message_ids: list = field(default_factory=list)  # Message-IDs of the returned original
    return_paths: list = field(default_factory=list)  # addresses that may carry our VERP token
    report_id: str = ""  # the returned mail's own Message-ID (for de-duplication)

    @property
    def detail(self):
        return " ".join(part for part in (self.status, self.diagnostic) if part)[:_MAX_TEXT]


def parse(raw):
    """The Reports in one returned mail (bytes); an empty list when it is neither a
    bounce nor a complaint (an auto-reply, a human answer, spam)."""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    clues = {
        "return_paths": _envelope_recipients(message),
        "report_id": _one_line(message.get("Message-ID", "")),
    }
    report_type = (message.get_param("report-type") or "").lower() if message.get_content_type() == "multipart/report" else ""
    if report_type == "feedback-report" or _part(message, "message/feedback-report") is not None:
        return _feedback(message, clues)
    if report_type == "delivery-status" or _part(message, "message/delivery-status") is not None:
        return _delivery_status(message, clues)
    return _unstructured(message, clues)


def classify(status, *, action="failed"):
    """The kind of a DSN recipient block: its Action and Status (RFC 3464 2.3.3, 2.3.4)."""
    action = (action or "").strip().lower()
    if action == "delayed":
        return DEFERRED
    if action not in ("failed", ""):
        return None  # delivered, relayed, expanded: nothing to act on
    if _HARD_STATUS.match(status or ""):
        return HARD_BOUNCE
    return SOFT_BOUNCE if status else HARD_BOUNCE


# --- Delivery status notifications (RFC 3464) ---------------------------------------------


def _delivery_status(message, clues):
    part = _part(message, "message/delivery-status")
    blocks = _field_blocks(part) if part is not None else []
    originals = _original_message_ids(message)
    reports = []
    for block in blocks[1:]:  # the first block is about the message, the rest per recipient
        status = status_code(block.get("Status", "")) or status_code(block.get("Diagnostic-Code", ""))
        kind = classify(status, action=block.get("Action", ""))
        if kind is None:
            continue
        reports.append(Report(
            kind=kind, recipient=_typed_address(block.get("Original-Recipient") or block.get("Final-Recipient", "")),
            status=status, diagnostic=_diagnostic(block.get("Diagnostic-Code", "")),
            message_ids=originals, **clues,
        ))
    if not reports and not blocks[1:]:
        return _unstructured(message, clues)
    return reports


def _field_blocks(part):
    """The header blocks of a message/delivery-status part (Python parses them as a list of
    messages, unless the part was transfer-encoded, when we split the text ourselves)."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload:
        return payload
    text = part.get_payload(decode=True) or b""
    parser = email.parser.BytesHeaderParser(policy=email.policy.compat32)
    return [parser.parsebytes(chunk.strip() + b"\n") for chunk in re.split(rb"\r?\n\r?\n", text) if chunk.strip()]


# --- Feedback loop complaints (ARF, RFC 5965) ---------------------------------------------


def _feedback(message, clues):
    part = _part(message, "message/feedback-report")
    blocks = _field_blocks(part) if part is not None else []
    fields = blocks[0] if blocks else email.message.Message()
    feedback_type = _one_line(fields.get("Feedback-Type", "abuse")).lower() or "abuse"
    if feedback_type not in _COMPLAINT_TYPES:
        return []
    agent = _one_line(fields.get("User-Agent", ""))
    return_paths = list(clues["return_paths"])
    original_from = _typed_address(fields.get("Original-Mail-From", ""))
    if original_from:
        return_paths.insert(0, original_from)  # the original's envelope sender: our VERP address
    recipients = [_typed_address(value) for value in (fields.get_all("Original-Rcpt-To") or [])] or [""]
    originals = _original_message_ids(message)
    diagnostic = f"Feedback-Type: {feedback_type}" + (f" (reported by {agent})" if agent else "")
    return [
        Report(kind=COMPLAINT, recipient=recipient, diagnostic=diagnostic, message_ids=originals,
               return_paths=return_paths, report_id=clues["report_id"])
        for recipient in recipients
    ]


# --- Everything else ----------------------------------------------------------------------------


def _unstructured(message, clues):
    """Old-style bounces (qmail, some Exchange versions) without a DSN part: a mail from the
    mailer daemon, or with a bounce-like subject, that quotes an SMTP status code."""
    sender = _one_line(message.get("From", ""))
    addresses = [address for _, address in getaddresses([sender])]
    is_daemon = any(_DAEMON.match(address) for address in addresses)
    if not (is_daemon or _FALLBACK_SUBJECT.search(message.get("Subject", "") or "")):
        return []
    text = _plain_text(message)
    found = _STATUS.search(text)
    if not found or found.group(1) == "2":
        return []
    status = found.group(0)
    kind = SOFT_BOUNCE if status.startswith("4") else classify(status)
    failed = _one_line(message.get("X-Failed-Recipients", ""))
    line = text[max(0, found.start() - 200): found.end() + 300]
    return [Report(
        kind=kind, recipient=failed.split(",")[0].strip(), status=status, diagnostic=_one_line(line),
        message_ids=_original_message_ids(message), **clues,
    )]


# --- Helpers -------------------------------------------------------------------------------------


def _part(message, content_type):
    for part in message.walk():
        if part.get_content_type() == content_type:
            return part
    return None


def _envelope_recipients(message):
    found = []
    for name in _RECIPIENT_HEADERS:
        for _, address in getaddresses(message.get_all(name) or []):
            if address and address not in found:
                found.append(address)
    return found


def _original_message_ids(message):
    """Message-IDs of the original, from a returned message/rfc822 part or headers part."""
    ids = []
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            headers = inner if isinstance(inner, email.message.Message) else None
        elif kind == "text/rfc822-headers":
            text = part.get_payload(decode=True) or b""
            headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(text)
        else:
            continue
        if headers is not None and headers.get("Message-ID"):
            value = _one_line(headers["Message-ID"])
            if value not in ids:
                ids.append(value)
    return ids


def _typed_address(value):
    """'rfc822; bob@example.org' -> 'bob@example.org' (RFC 3464 address-type; address)."""
    value = _one_line(value)
    if ";" in value:
        value = value.split(";", 1)[1]
    return value.strip().strip("<>").strip()


def status_code(value):
    found = _STATUS.search(value or "")
    return found.group(0) if found else ""


def _diagnostic(value):
    value = _one_line(value)
    kind, _, text = value.partition(";")
    return (text if text and kind.strip().lower() in ("smtp", "x-postfix", "x-unix") else value).strip()[:_MAX_TEXT]


def _plain_text(message):
    for part in message.walk():
        if part.get_content_type() == "text/plain" and not part.is_multipart():
            payload = part.get_payload(decode=True) or b""
            return payload.decode(part.get_content_charset() or "utf-8", "replace")
    return ""


def _one_line(value):
    """Header values unfolded, as text (encoded words left as they are)."""
    return re.sub(r"\s+", " ", str(value or "")).strip()
