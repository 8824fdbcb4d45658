"""
A small client of SpamAssassin's spamd, speaking the spamc protocol (SPAMC/1.5).

One request per message: `REPORT SPAMC/1.5`, a Content-length header, a blank
line and the message; spamd answers `SPAMD/1.1 0 EX_OK`, a `Spam: True ; 5.2 / 5.0`
header and the report, a table of the rules that fired with their points and
descriptions (the format of SpamAssassin's `report` template, Debian's default):

     pts rule name              description
    ---- ---------------------- --------------------------------------------------
    1000 GTUBE                  BODY: Generic Test for Unsolicited Bulk Email
    -0.0 NO_RELAYS              Informational: message was not relayed via SMTP

SPAMD_URL says where spamd listens: `tcp://127.0.0.1:783` or `unix:///run/spamd.sock`.
"""

import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

TIMEOUT = 15  # seconds; a scan takes well under one, the first after spamd starts a little more
_STATUS = re.compile(r"SPAMD/(\d+\.\d+) (\d+) (.*)")
_SPAM = re.compile(r"(True|False|Yes|No)\s*;\s*(-?[\d.]+)\s*/\s*(-?[\d.]+)", re.I)
_RULE = re.compile(r"\s*(-?\d+(?:\.\d+)?)\s+([A-Z0-9_]+)(?:\s+(.*))?")


class SpamdError(Exception):
    """spamd could not be reached, or did not answer as the protocol says."""


@dataclass(frozen=True)
class Rule:
    name: str
    score: float
    description: str


@dataclass(frozen=True)
class Report:
    is_spam: bool
    score: float
    threshold: float
    rules: tuple  # Rule, in the report's order


def check(raw, url, *, timeout=TIMEOUT):
    """Ask spamd at `url` about the message `raw` (bytes); returns a Report."""
    request = b"REPORT SPAMC/1.5\r\nContent-length: %d\r\n\r\n" % len(raw) + raw
    try:
        with _connect(url, timeout) as conn:
            conn.sendall(request)
            conn.shutdown(socket.SHUT_WR)
            answer = _read_all(conn)
    except OSError as exc:
        raise SpamdError(str(exc) or exc.__class__.__name__) from exc
    return parse(answer)


def _connect(url, timeout):
    parts = urlsplit(url)
    if parts.scheme == "unix":
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.settimeout(timeout)
        conn.connect(parts.path)
        return conn
    if parts.scheme != "tcp" or not parts.hostname:
        raise SpamdError(f"{url!r} is not a spamd address; write tcp://host:port or unix:///path.")
    return socket.create_connection((parts.hostname, parts.port or 783), timeout=timeout)


def _read_all(conn):
    chunks = []
    while chunk := conn.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def parse(answer):
    """The Report in spamd's answer to REPORT (bytes); raises SpamdError for an error answer."""
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = _STATUS.fullmatch(lines[0].strip())
    if status is None:
        raise SpamdError(f"spamd answered {lines[0][:80]!r}, not a SPAMD status line.")
    if status.group(2) != "0":
        raise SpamdError(f"spamd refused the message: {status.group(2)} {status.group(3)}.")
    headers = dict(_header(line) for line in lines[1:] if ":" in line)
    verdict = _SPAM.search(headers.get("spam", ""))
    if verdict is None:
        raise SpamdError("spamd's answer has no Spam header.")
    return Report(
        is_spam=verdict.group(1).lower() in ("true", "yes"), score=float(verdict.group(2)),
        threshold=float(verdict.group(3)), rules=tuple(rules(body.decode("utf-8", "replace"))),
    )


def _header(line):
    name, _, value = line.partition(":")
    return name.strip().lower(), value.strip()


def rules(report):
    """The rules in the report's table: after the `---- ----` line, one per line, with
    descriptions that run on over indented lines."""
    found, in_table = [], False
    for line in report.splitlines():
        if not in_table:
            in_table = line.startswith("----")
            continue
        if not line.strip():
            break
        match = _RULE.fullmatch(line)
        if match:
            found.append([match.group(2), float(match.group(1)), (match.group(3) or "").strip()])
        elif found:  # a description continued on the next line
            found[-1][2] = f"{found[-1][2]} {line.strip()}".strip()
    return [Rule(name, score, description) for name, score, description in found]
