"""
The HTTP client of REST hooks: signs a delivery and POSTs it to a target that
cannot be turned against us (SSRF).

A target must be an http(s) URL whose host resolves only to public addresses.
Refused: private, loopback, link-local (169.254.169.254, the cloud metadata
service), unspecified, multicast and reserved addresses; IPv4 addresses hidden
in IPv6 (IPv4-mapped ::ffff:a.b.c.d, 6to4, Teredo) are judged by the IPv4
address inside; numeric hosts other than a plain dotted IPv4 (2130706433,
0x7f000001, 0177.0.0.1, 127.1) are refused outright, since resolvers read them
in surprising ways; and a name is refused when ANY of its addresses is not
public. The address checked is the address connected to ("pinned"): the
connection goes to that IP while the Host header and TLS SNI/certificate check
use the name, so a DNS answer that changes between check and connect (DNS
rebinding) cannot redirect us. Redirects are never followed. Setting
HOOKS_ALLOW_LOOPBACK (tests, local development) allows loopback addresses only.

Signature: `X-Autoresponder-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`,
the HMAC keyed with the hook's secret over "<t>.<raw body>". See README.md
(REST hooks) for a receiver's verification code.
"""

import hashlib
import hmac
import http.client
import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

SIGNATURE_HEADER = "X-Autoresponder-Signature"
USER_AGENT = "Autoresponder-Hooks/1"
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 10
RESPONSE_KEPT = 500  # characters of the target's answer kept in the delivery log
MAX_URL = 2000
_NUMERIC_HOST = re.compile(r"^(0x[0-9a-f]*|[0-9]+)(\.(0x[0-9a-f]*|[0-9]+))*\.?$", re.IGNORECASE)


class UnsafeTarget(ValueError):
    """A target URL we refuse to call; the message says why in plain words."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # the name, for Host and SNI
    port: int
    path: str  # path and query
    address: str  # the checked IP the connection goes to


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer (network error, refused target)
    body: str = ""
    error: str = ""
    elapsed_ms: int = 0


# --- Checking targets ---------------------------------------------------------------------


def check_url(url):
    """(scheme, host, port, path) of an acceptable URL; raises UnsafeTarget. Does not resolve."""
    if not isinstance(url, str) or len(url) > MAX_URL or any(c in url for c in "\r\n\t\x00 "):
        raise UnsafeTarget(f"Enter an http:// or https:// URL without spaces, at most {MAX_URL} characters.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("The target must be an http:// or https:// URL.")
    if parts.username or parts.password:
        raise UnsafeTarget("Put no user name or password in the URL; the signature authenticates deliveries.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise UnsafeTarget("The URL has no host name.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeTarget("The URL's port is not a number between 1 and 65535.") from None
    if _NUMERIC_HOST.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise UnsafeTarget("Write the host as a name or a plain dotted IPv4 address (like 203.0.113.7).") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, host, port, path


def address_problem(ip):
    """Why `ip` (an ipaddress object) may not be called, or "" when it may."""
    ip = _embedded_ipv4(ip)
    if ip.is_loopback:
        return "" if settings.HOOKS_ALLOW_LOOPBACK else "it is a loopback address (this machine)"
    if ip.is_link_local:
        return "it is a link-local address (such as the cloud metadata service 169.254.169.254)"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "it is not an address of a public server"
    if ip.is_private or not ip.is_global:
        return "it is a private address"
    return ""


def _embedded_ipv4(ip):
    """The IPv4 address an IPv6 address carries (IPv4-mapped, 6to4, Teredo), else `ip` itself."""
    if ip.version == 6:
        inner = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if inner is not None:
            return inner
    return ip


def resolve(host, port):
    """The host's addresses, every one of them checked; raises UnsafeTarget."""
    try:
        literal = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        literal = None
    if literal is not None:
        found = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise UnsafeTarget(f"The host name {host!r} does not resolve ({exc}).") from None
        found = list(dict.fromkeys(ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos))
    for ip in found:
        problem = address_problem(ip)
        if problem:
            raise UnsafeTarget(f"{host} resolves to {ip}, which hooks may not call: {problem}.")
    if not found:
        raise UnsafeTarget(f"The host name {host!r} has no address.")
    return [str(ip) for ip in found]


def check_target(url):
    """The Target to connect to (name checked, address resolved and pinned); raises UnsafeTarget."""
    scheme, host, port, path = check_url(url)
    return Target(scheme, host, port, path, resolve(host, port)[0])


# --- Signing ------------------------------------------------------------------------------------


def signature(secret, body, timestamp):
    """The hex HMAC-SHA256 of "<timestamp>.<body>" keyed with `secret` (body: bytes)."""
    message = str(int(timestamp)).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret, body, timestamp):
    return f"t={int(timestamp)},v1={signature(secret, body, timestamp)}"


def verify(secret, body, header, *, tolerance=300, now=None):
    """What a receiver does (also documented in README.md): True when `header` signs `body`
    with `secret` and its timestamp is within `tolerance` seconds of now."""
    fields = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, body, timestamp), fields.get("v1", ""))


# --- Posting -------------------------------------------------------------------------------------


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the checked address; Host names the target."""

    def __init__(self, target, timeout):
        super().__init__(target.host, target.port, timeout=timeout)
        self.address = target.address

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), timeout=CONNECT_TIMEOUT)
        self.sock.settimeout(self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, with TLS: SNI and certificate checked against the name, not the address."""

    def __init__(self, target, timeout):
        super().__init__(target.host, target.port, timeout=timeout, context=ssl.create_default_context())
        self.address = target.address

    def connect(self):
        raw = socket.create_connection((self.address, self.port), timeout=CONNECT_TIMEOUT)
        raw.settimeout(self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def post(url, body, headers):
    """POST `body` (bytes) to `url` once, never following a redirect; returns an Answer.

    Every failure (a refused target, DNS, connection, TLS, timeout) is an Answer
    with status None and the reason, never an exception.
    """
    started = time.monotonic()
    try:
        target = check_target(url)
    except UnsafeTarget as exc:
        return Answer(None, error=f"Refused target: {exc}")
    connection_class = _PinnedHTTPSConnection if target.scheme == "https" else _PinnedHTTPConnection
    connection = connection_class(target, READ_TIMEOUT)
    try:
        connection.request("POST", target.path, body=body, headers={
            "Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
        response = connection.getresponse()
        text = response.read(RESPONSE_KEPT * 4).decode("utf-8", "replace")[:RESPONSE_KEPT]
        return Answer(response.status, text, elapsed_ms=_ms(started))
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        return Answer(None, error=f"{exc.__class__.__name__}: {exc}"[:RESPONSE_KEPT], elapsed_ms=_ms(started))
    finally:
        connection.close()


def _ms(started):
    return int((time.monotonic() - started) * 1000)
