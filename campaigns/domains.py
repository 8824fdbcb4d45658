"""
Sending domains: the domains mail is sent From, their DKIM keys, and the DNS
records to publish for them (DKIM, SPF, DMARC). The checks of what is actually
published live in campaigns/domain_checks.py.

On the SMTP path a message From a domain that has a sending domain (itself, or
a parent up to its organizational domain, as DMARC's relaxed alignment allows)
is signed with that domain's active keys: RSA, plus Ed25519 as a second
signature when the domain has one (campaigns/composing.py).
"""

import ipaddress
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from . import dkim
from .domain_names import domain_of, normalize_domain, parents
from .models import Backend, DkimKey, SendingDomain

# What each ESP asks senders to include in their SPF record (from each one's
# domain-authentication documentation). A lookup table, not code: an ESP is added here.
ESP_SPF_INCLUDES = {
    Backend.AMAZON_SES: "amazonses.com",
    Backend.MANDRILL: "spf.mandrillapp.com",
    Backend.SENDGRID: "sendgrid.net",
    Backend.POSTMARK: "spf.mtasv.net",
    Backend.MAILGUN: "mailgun.org",
    Backend.BREVO: "spf.brevo.com",
}
SELECTOR_PREFIX = "ar"
_SIGNERS = {}  # DkimKey pk -> dkim.Signer (a key's selector and private key never change)


@dataclass(frozen=True)
class Record:
    """One DNS record to publish."""

    key: str  # stable id: "dkim-<selector>", "spf", "dmarc"
    purpose: str
    type: str
    name: str
    value: str
    note: str = ""


# --- Domains and keys -------------------------------------------------------------------------


@transaction.atomic
def create_domain(domain, *, dmarc_rua="", return_path_domain="", ed25519=False):
    """Add a sending domain with a new RSA-2048 key (and an Ed25519 key when asked).
    Raises ValidationError when the name is not a domain or is already added."""
    name = normalize_domain(domain)
    if SendingDomain.objects.filter(domain=name).exists():
        raise ValidationError(f"{name} is already a sending domain.")
    sending_domain = SendingDomain(
        domain=name, dmarc_rua=dmarc_rua.strip(),
        return_path_domain=normalize_domain(return_path_domain) if return_path_domain.strip() else "",
    )
    sending_domain.full_clean()
    sending_domain.save()
    add_key(sending_domain, DkimKey.RSA, state=DkimKey.ACTIVE)
    if ed25519:
        add_key(sending_domain, DkimKey.ED25519, state=DkimKey.ACTIVE)
    return sending_domain


def add_key(sending_domain, algorithm, *, state=DkimKey.NEXT):
    """A new key pair under a selector the domain has not used. Keys added to a domain that
    already signs start as `next`: they sign once the check finds their record published."""
    pem, txt = dkim.generate_key(algorithm)
    return DkimKey.objects.create(
        domain=sending_domain, selector=fresh_selector(sending_domain, algorithm), algorithm=algorithm,
        private_key=pem, public_key=txt.partition("p=")[2], state=state,
    )


def fresh_selector(sending_domain, algorithm, *, today=None):
    """ar2026, then ar202611, ar20261129, ar20261129n2…; Ed25519 keys end in "e" (ar2026e)."""
    today = today or timezone.localdate()
    suffix = "e" if algorithm == DkimKey.ED25519 else ""
    used = set(sending_domain.keys.values_list("selector", flat=True))
    day = f"{SELECTOR_PREFIX}{today:%Y%m%d}"
    candidates = [f"{SELECTOR_PREFIX}{today:%Y}", f"{SELECTOR_PREFIX}{today:%Y%m}", day]
    candidates += [f"{day}n{n}" for n in range(2, 100)]
    return next(c + suffix for c in candidates if c + suffix not in used)


def add_ed25519(sending_domain):
    """Start signing with Ed25519 too (a second signature) once its record is published."""
    if sending_domain.keys.filter(algorithm=DkimKey.ED25519, state__in=(DkimKey.ACTIVE, DkimKey.NEXT)).exists():
        raise ValidationError(f"{sending_domain} already has an Ed25519 key.")
    return add_key(sending_domain, DkimKey.ED25519, state=DkimKey.NEXT)


@transaction.atomic
def rotate(sending_domain):
    """Begin a key rotation: a `next` key for each algorithm that signs now. The next
    check that finds a next key's record published makes it active (promote)."""
    sending_domain = SendingDomain.objects.select_for_update().get(pk=sending_domain.pk)
    keys = list(sending_domain.keys.all())
    pending = {k.algorithm for k in keys if k.state == DkimKey.NEXT}
    active = [k.algorithm for k in keys if k.state == DkimKey.ACTIVE]
    return [add_key(sending_domain, algorithm) for algorithm in active if algorithm not in pending]


@transaction.atomic
def promote(key):
    """A published `next` key signs from now on; the key it replaces is retired (shown until forgotten)."""
    key = DkimKey.objects.select_for_update().get(pk=key.pk)
    if key.state != DkimKey.NEXT:
        return False
    DkimKey.objects.filter(domain_id=key.domain_id, algorithm=key.algorithm, state=DkimKey.ACTIVE).update(
        state=DkimKey.RETIRED)
    key.state = DkimKey.ACTIVE
    key.save(update_fields=["state"])
    return True


def forget_key(key):
    """Delete a retired key (its record is gone from DNS) or cancel a next one. Active keys stay."""
    if key.state == DkimKey.ACTIVE:
        raise ValidationError("The active key signs your mail; rotate to a new key before removing it.")
    key.delete()


def delete_domain(sending_domain):
    sending_domain.delete()


# --- The records to publish ------------------------------------------------------------------------


def return_path_domain(sending_domain):
    """The domain of the envelope sender (Return-Path) that receivers check SPF against."""
    return sending_domain.return_path_domain or settings.BOUNCE_DOMAIN.lower() or sending_domain.domain


def records(sending_domain, backends=None):
    """The exact DNS records to publish: each DKIM key not yet retired, SPF, DMARC."""
    keys = sending_domain.keys.exclude(state=DkimKey.RETIRED).order_by("algorithm", "-state", "created_at")
    found = [dkim_record(key) for key in keys]
    found.append(spf_record(sending_domain, backends))
    found.append(dmarc_record(sending_domain))
    return found


def dkim_record(key):
    label = "RSA" if key.algorithm == DkimKey.RSA else "Ed25519"
    note = "A new key: publish it; mail is signed with it once the check finds it." if key.state == DkimKey.NEXT else ""
    return Record(f"dkim-{key.selector}", f"DKIM ({label})", "TXT",
                  f"{key.selector}._domainkey.{key.domain.domain}", key.record_value, note)


def active_backends():
    return list(Backend.objects.filter(is_active=True).exclude(kind=Backend.OUTBOX))


def spf_mechanisms(backends):
    """(mechanisms, notes) that let the active backends send: ip4:/ip6:/a: for an SMTP
    server, the ESP's documented include otherwise."""
    mechanisms, notes = [], []
    for backend in backends:
        if backend.kind in ESP_SPF_INCLUDES:
            mechanism = f"include:{ESP_SPF_INCLUDES[backend.kind]}"
        elif backend.kind == Backend.SMTP:
            mechanism = _smtp_mechanism(backend, notes)
        else:
            continue
        if mechanism and mechanism not in mechanisms:
            mechanisms.append(mechanism)
    return mechanisms, notes


def _smtp_mechanism(backend, notes):
    host = backend.host.strip().strip("[]").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if (address and not address.is_global) or host == "localhost" or (not address and "." not in host):
        notes.append(f"The backend “{backend.name}” hands mail to {host}, on this machine or network: add the "
                     "public address your mail leaves from (ip4:… or ip6:…) to the record.")
        return ""
    if address:
        return f"ip{address.version}:{address}"
    return f"a:{host}"


def spf_record(sending_domain, backends=None):
    mechanisms, notes = spf_mechanisms(active_backends() if backends is None else backends)
    if not mechanisms:
        mechanisms = ["mx"]
        if not notes:
            notes.append("No sending backend is active yet; this record lets the domain's MX hosts send. "
                         "Add a backend under Sending, then come back for the exact record.")
    name = return_path_domain(sending_domain)
    return Record("spf", "SPF", "TXT", name, "v=spf1 " + " ".join(mechanisms) + " ~all", " ".join(notes))


def dmarc_record(sending_domain):
    value = "v=DMARC1; p=none"
    note = ("Start with p=none (reports only); once the reports show only your own mail passing, "
            "move to p=quarantine, then p=reject.")
    if sending_domain.dmarc_rua:
        value += f"; rua=mailto:{sending_domain.dmarc_rua}"
    else:
        note += " Add a DMARC report address to this domain to receive the daily reports."
    return Record("dmarc", "DMARC", "TXT", f"_dmarc.{sending_domain.domain}", value, note)


# --- Signing and authentication, for the pipeline and the pre-send check --------------------------


def sending_domain_for(from_domain):
    """The sending domain that covers `from_domain`: itself, else the nearest parent up to its
    organizational domain (DMARC relaxed alignment), or None."""
    candidates = parents(from_domain)
    found = {d.domain: d for d in SendingDomain.objects.filter(domain__in=candidates)}
    return next((found[c] for c in candidates if c in found), None)


def signers_for(from_email):
    """DKIM signers for mail From `from_email` (RSA first), [] when no sending domain may sign for it."""
    sending_domain = sending_domain_for(domain_of(from_email))
    if sending_domain is None or not sending_domain.may_sign:
        return []
    keys = sending_domain.keys.filter(state=DkimKey.ACTIVE).order_by("-algorithm")  # rsa before ed25519
    signers = []
    for key in keys:
        signer = _SIGNERS.get(key.pk)
        if signer is None:
            if len(_SIGNERS) > 1000:
                _SIGNERS.clear()
            signer = _SIGNERS[key.pk] = dkim.Signer(sending_domain.domain, key.selector, key.private_key)
        signers.append(signer)
    return signers


def is_authenticated(from_domain):
    """(True, reason) when mail From `from_domain` passes DKIM, SPF and DMARC as last checked;
    (False, what to do) otherwise. Reads the stored check results: no DNS lookup."""
    from_domain = from_domain.lower().rstrip(".")
    sending_domain = sending_domain_for(from_domain)
    if sending_domain is None:
        return False, (f"{from_domain} is not a sending domain: add it under Sending → Domains and publish "
                       "its DNS records, so that receivers can tell your mail is really from you.")
    if sending_domain.status == SendingDomain.VERIFIED:
        when = timezone.localtime(sending_domain.checked_at).strftime("%Y-%m-%d %H:%M")
        return True, f"{sending_domain.domain} passed its DKIM, SPF and DMARC checks (last checked {when})."
    errors = [c for c in sending_domain.checks if c.get("level") == "error"]
    if not sending_domain.checked_at:
        return False, f"{sending_domain.domain} has not been checked yet: publish its DNS records, then check it."
    first = errors[0]["detail"] if errors else "its checks have not all passed"
    return False, (f"{sending_domain.domain} is not verified: {first} "
                   "See Sending → Domains for the exact records and check it again.")
