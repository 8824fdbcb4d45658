"""
Domain names as the sending-domain checks read them: normalised, validated, and
reduced to their organizational domain (DMARC's relaxed alignment, RFC 7489 3.2).

The organizational domain comes from the Public Suffix List that the
`publicsuffixlist` package ships (no download at run time): mail.example.co.uk
belongs to example.co.uk, not to co.uk.
"""

import functools
import re

import idna
from django.core.exceptions import ValidationError
from publicsuffixlist import PublicSuffixList

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")


@functools.lru_cache(maxsize=1)
def _psl():
    return PublicSuffixList()


def normalize_domain(value):
    """'Mail.Example.COM.' -> 'mail.example.com' (IDNs as A-labels); ValidationError when it is not a domain."""
    text = (value or "").strip().rstrip(".").lower()
    if "@" in text:
        raise ValidationError(f"Enter the domain only (the part after @), not {text!r}.")
    try:
        text = idna.encode(text, uts46=True).decode("ascii") if text and not text.isascii() else text
    except idna.IDNAError as exc:
        raise ValidationError(f"{value!r} is not a valid domain name.") from exc
    labels = text.split(".")
    if len(text) > 253 or len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValidationError(f"{value!r} is not a valid domain name; enter one such as example.com.")
    if _psl().privatesuffix(text) is None:
        raise ValidationError(f"{text} is a public suffix that anyone can register under; enter your own domain.")
    return text


def validate_domain(value):
    """Model field validator: the stored value must already be normalised."""
    if normalize_domain(value) != value:
        raise ValidationError(f"Write the domain in lower case without a final dot: {normalize_domain(value)}.")


def org_domain(domain):
    """The organizational domain of `domain` (itself when it is one, or when the list does not know it)."""
    domain = domain.strip().rstrip(".").lower()
    return _psl().privatesuffix(domain) or domain


def is_aligned(identifier, from_domain, *, strict=False):
    """DMARC identifier alignment: the same domain (strict), or the same organizational domain (relaxed)."""
    identifier, from_domain = identifier.lower().rstrip("."), from_domain.lower().rstrip(".")
    if identifier == from_domain:
        return True
    return not strict and org_domain(identifier) == org_domain(from_domain)


def domain_of(address):
    """The domain part of an e-mail address, lower case."""
    return address.rpartition("@")[2].strip().rstrip(".").lower()


def parents(domain):
    """`domain` and each parent up to its organizational domain, nearest first."""
    domain = domain.lower().rstrip(".")
    org = org_domain(domain)
    found = [domain]
    while domain != org and "." in domain:
        domain = domain.split(".", 1)[1]
        found.append(domain)
    return found
