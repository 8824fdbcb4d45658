"""
DNS lookups for the deliverability checks (sending domains, list hygiene).

Every lookup goes through `resolver()`: the system resolver, or the servers in
the DNS_NAMESERVERS setting (the tests point it at a server on loopback). The
timeout is short (DNS_TIMEOUT_SECONDS) because a person is often waiting on the
answer, and names are always absolute (no search domains: "example.com" must
never become "example.com.corp.lan").

The helpers answer "no such record" with an empty list and raise
DNSLookupError when the question could not be answered at all (timeout,
SERVFAIL, refused), so a caller never mistakes a broken resolver for a missing
record.
"""

import ipaddress

import dns.exception
import dns.name
import dns.nameserver
import dns.resolver
from django.conf import settings


class DNSLookupError(Exception):
    """The DNS could not answer (timeout, SERVFAIL, refused, malformed name)."""


def _parse_nameserver(text):
    """'1.2.3.4', '1.2.3.4:5353', '::1', '[::1]:5353' -> Do53Nameserver."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":"):
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, port = text.split(":")
        port = int(port)
    ipaddress.ip_address(host)  # dnspython wants an address, not a host name
    return dns.nameserver.Do53Nameserver(host, port)


def resolver():
    """A Resolver on DNS_NAMESERVERS (or the system's), with a short lifetime and no search list."""
    servers = [s for s in getattr(settings, "DNS_NAMESERVERS", []) if s.strip()]
    try:
        res = dns.resolver.Resolver(configure=not servers)
    except dns.resolver.NoResolverConfiguration as exc:
        raise DNSLookupError("This machine has no DNS resolver configured; set DNS_NAMESERVERS.") from exc
    if servers:
        res.nameservers = [_parse_nameserver(s) for s in servers]
    res.search = []
    res.use_search_by_default = False
    lifetime = float(getattr(settings, "DNS_TIMEOUT_SECONDS", 3))
    res.timeout = lifetime
    res.lifetime = lifetime
    # EDNS so a 2048-bit DKIM key fits in one UDP answer; dnspython retries over TCP on truncation.
    res.use_edns(0, 0, 1232)
    return res


def _absolute(name):
    try:
        return dns.name.from_text(name.strip().rstrip(".") + ".")
    except (dns.exception.DNSException, UnicodeError, ValueError) as exc:
        raise DNSLookupError(f"{name!r} is not a valid domain name.") from exc


def _answer(name, rtype, res=None):
    """The answer's rdata list; [] when the name or the type does not exist."""
    qname = _absolute(name)
    try:
        return list((res or resolver()).resolve(qname, rtype, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.resolver.LifetimeTimeout as exc:
        raise DNSLookupError(f"The DNS lookup of {rtype} records for {name} timed out; try again later.") from exc
    except dns.resolver.NoNameservers as exc:
        raise DNSLookupError(f"No DNS server could answer for {rtype} records of {name} (SERVFAIL or refused); "
                             "check the domain's name servers.") from exc
    except dns.exception.DNSException as exc:
        raise DNSLookupError(f"The DNS lookup of {rtype} records for {name} failed: {exc}") from exc


def txt(name, res=None):
    """Every TXT record at `name`, each with its character-strings joined (as SPF and DKIM read them)."""
    return [b"".join(r.strings).decode("utf-8", "replace") for r in _answer(name, "TXT", res)]


def mx(name, res=None):
    """[(preference, host)] sorted by preference; a null MX (RFC 7505, "0 .") gives host ""."""
    hosts = [(r.preference, r.exchange.to_text().rstrip(".").lower()) for r in _answer(name, "MX", res)]
    return sorted(hosts)


def addresses(name, res=None):
    """The IPv4 and IPv6 addresses of `name` (A, then AAAA)."""
    res = res or resolver()
    found = [r.address for r in _answer(name, "A", res)]
    return found + [r.address for r in _answer(name, "AAAA", res)]
