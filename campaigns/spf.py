"""
SPF (RFC 7208), evaluated as far as the sending-domain check needs it.

`check_host(ip, domain)` answers what a receiver would: does the SPF record of
`domain` let `ip` send? It follows include:, redirect=, a, mx, ip4 and ip6, and
stops with permerror past 10 DNS lookups, as receivers do. `walk(domain)` reads
the whole include tree without an address: how many lookups a receiver may
need in the worst case, and which domains are included (an ESP's include can
sit several levels down, e.g. include:_spf.example.com → include:amazonses.com).

Not evaluated: macros (%{i} and friends; a term with one matches nothing here)
and ptr, which RFC 7208 tells senders not to use (it is counted, never matched).
"""

import ipaddress
import re
from dataclasses import dataclass, field

from autoresponder import dns as ardns

MAX_LOOKUPS = 10  # RFC 7208 4.6.4
MAX_MX_NAMES = 10
PASS, FAIL, SOFTFAIL, NEUTRAL, NONE, PERMERROR, TEMPERROR = (
    "pass", "fail", "softfail", "neutral", "none", "permerror", "temperror",
)
_QUALIFIERS = {"+": PASS, "-": FAIL, "~": SOFTFAIL, "?": NEUTRAL}
_MODIFIER = re.compile(r"([a-z][a-z0-9_.-]*)=(.*)\Z", re.I)
_MECHANISM = re.compile(r"([+\-~?]?)([a-z0-9]+)(?::([^/]*))?(?:/(\d+))?(?://(\d+))?\Z", re.I)
_DNS_MECHANISMS = ("include", "a", "mx", "ptr", "exists")


class PermError(Exception):
    """The record cannot be evaluated as published (syntax, two records, too many lookups)."""


class TempError(Exception):
    """DNS did not answer."""


def spf_records(domain, res=None):
    """The TXT records at `domain` that are SPF records ("v=spf1" alone or followed by a space)."""
    try:
        found = ardns.txt(domain, res)
    except ardns.DNSLookupError as exc:
        raise TempError(str(exc)) from exc
    return [r for r in found if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


@dataclass
class Term:
    qualifier: str
    name: str  # all, include, a, mx, ip4, ip6, ptr, exists
    value: str  # the domain or network, "" when absent
    cidr4: int | None = None
    cidr6: int | None = None


@dataclass
class Record:
    terms: list
    redirect: str = ""


def parse(text):
    """The mechanisms and the redirect of one SPF record; PermError on a term it cannot read."""
    record = Record(terms=[])
    for token in text.split()[1:]:
        modifier = _MODIFIER.match(token)
        if modifier and ":" not in modifier.group(1):
            if modifier.group(1).lower() == "redirect":
                record.redirect = modifier.group(2).rstrip(".")
            continue  # exp= and unknown modifiers change nothing here
        match = _MECHANISM.match(token)
        name = match.group(2).lower() if match else ""
        if name not in ("all", "include", "a", "mx", "ip4", "ip6", "ptr", "exists"):
            raise PermError(f"the SPF term {token!r} is not valid")
        value = (match.group(3) or "").rstrip(".")
        if name in ("include", "exists", "ip4", "ip6") and not value:
            raise PermError(f"the SPF term {token!r} needs a value after the colon")
        cidr4 = int(match.group(4)) if match.group(4) else None
        cidr6 = int(match.group(5)) if match.group(5) else None
        if name == "ip6" and cidr4 is not None:  # ip6:2001:db8::/32 puts the length in the first slot
            cidr6, cidr4 = cidr4, None
        record.terms.append(Term(_QUALIFIERS[match.group(1) or "+"], name, value, cidr4, cidr6))
    return record


def _one_record(domain, res):
    records = spf_records(domain, res)
    if len(records) > 1:
        raise PermError(f"{domain} publishes {len(records)} SPF records; receivers reject them all")
    return parse(records[0]) if records else None


@dataclass
class Evaluation:
    result: str
    lookups: int = 0
    reason: str = ""


class _Evaluator:
    def __init__(self, ip, res):
        self.ip = ipaddress.ip_address(ip)
        self.res = res
        self.lookups = 0

    def _count(self):
        self.lookups += 1
        if self.lookups > MAX_LOOKUPS:
            raise PermError(f"the record needs more than {MAX_LOOKUPS} DNS lookups")

    def _addresses(self, name):
        try:
            return [ipaddress.ip_address(a) for a in ardns.addresses(name, self.res)]
        except ardns.DNSLookupError as exc:
            raise TempError(str(exc)) from exc

    def _in(self, name, term):
        if "%" in name:
            return False  # a macro: not evaluated here
        cidr = term.cidr4 if self.ip.version == 4 else term.cidr6
        prefix = self.ip.max_prefixlen if cidr is None else cidr
        return any(
            address.version == self.ip.version
            and self.ip in ipaddress.ip_network(f"{address}/{prefix}", strict=False)
            for address in self._addresses(name)
        )

    def _mx_hosts(self, name):
        try:
            return [host for _pref, host in ardns.mx(name, self.res) if host][:MAX_MX_NAMES]
        except ardns.DNSLookupError as exc:
            raise TempError(str(exc)) from exc

    def matches(self, term, domain):
        name = term.value or domain
        if term.name == "all":
            return True
        if term.name in ("ip4", "ip6"):
            cidr = term.cidr4 if term.name == "ip4" else term.cidr6
            try:
                network = ipaddress.ip_network(name if cidr is None else f"{name}/{cidr}", strict=False)
            except ValueError as exc:
                raise PermError(f"{term.name}:{name} is not a network") from exc
            return network.version == self.ip.version and self.ip in network
        self._count()
        if term.name == "include":
            result = self.evaluate(name)
            if result == NONE:
                raise PermError(f"include:{name} has no SPF record")
            return result == PASS
        if term.name == "a":
            return self._in(name, term)
        if term.name == "mx":
            return any(self._in(host, term) for host in self._mx_hosts(name))
        if term.name == "exists":
            return "%" not in name and any(a.version == 4 for a in self._addresses(name))
        return False  # ptr: counted, never matched

    def evaluate(self, domain):
        record = _one_record(domain, self.res)
        if record is None:
            return NONE
        for term in record.terms:
            if self.matches(term, domain):
                return term.qualifier
        if record.redirect:
            self._count()
            result = self.evaluate(record.redirect)
            if result == NONE:
                raise PermError(f"redirect={record.redirect} has no SPF record")
            return result
        return NEUTRAL


def check_host(ip, domain, res=None):
    """What a receiver's SPF check gives for mail from `ip` with a MAIL FROM at `domain`."""
    evaluator = _Evaluator(ip, res or ardns.resolver())
    try:
        return Evaluation(evaluator.evaluate(domain), evaluator.lookups)
    except PermError as exc:
        return Evaluation(PERMERROR, evaluator.lookups, str(exc))
    except TempError as exc:
        return Evaluation(TEMPERROR, evaluator.lookups, str(exc))


@dataclass
class Tree:
    records: list  # the SPF records at the domain itself (0, 1, or a mistaken several)
    lookups: int = 0  # DNS lookups a receiver may need, every branch taken
    includes: list = field(default_factory=list)  # included and redirected domains, in order
    error: str = ""  # a permerror or temperror met on the way
    temporary: bool = False  # the error is DNS not answering


def walk(domain, res=None):
    """Read the include/redirect tree of `domain`'s SPF record without an address."""
    res = res or ardns.resolver()
    tree = Tree(records=[])
    try:
        tree.records = spf_records(domain, res)
        if len(tree.records) == 1:
            _walk(parse(tree.records[0]), tree, res, depth=0)
    except PermError as exc:
        tree.error = str(exc)
    except TempError as exc:
        tree.error, tree.temporary = str(exc), True
    if not tree.error and tree.lookups > MAX_LOOKUPS:
        tree.error = f"the record needs {tree.lookups} DNS lookups; receivers stop at {MAX_LOOKUPS}"
    return tree


def _walk(record, tree, res, depth):
    if depth > MAX_LOOKUPS:
        raise PermError("the includes loop")
    for term in record.terms:
        if term.name in _DNS_MECHANISMS:
            tree.lookups += 1
        if term.name == "include" and "%" not in term.value:
            tree.includes.append(term.value.lower())
            _descend(term.value, tree, res, depth)
    if record.redirect:
        tree.lookups += 1
        tree.includes.append(record.redirect.lower())
        _descend(record.redirect, tree, res, depth)


def _descend(domain, tree, res, depth):
    included = _one_record(domain, res)
    if included is None:
        raise PermError(f"{domain}, included by the record, has no SPF record")
    _walk(included, tree, res, depth + 1)
