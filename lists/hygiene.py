"""
List hygiene: what an address is, besides valid. Three flags, stored on the
subscriber (is_role_address, is_disposable_address, has_no_mx) so the dashboard
can show and filter them, set at signup (services.subscribe) and at import
(lists.hygiene_import):

- role: the local part names a function, not a person (postmaster@, info@, …;
  see ROLE_LOCAL_PARTS). Such mailboxes are shared, read by whoever is on duty,
  and nobody there opted in personally, so they complain more and engage less.
  Flagged, never refused: many small businesses only have info@.
- disposable: the domain (or a parent of it) is a throwaway mail service
  listed in lists/data/disposable_domains.txt. The list's signup form refuses
  these when the list says so (MailingList.reject_disposable, on by default);
  imports flag them, or skip them when asked.
- no_mx: the domain has no mail server: no MX record and no address to fall
  back to (RFC 5321 §5.1), or a "null MX" saying it takes no mail (RFC 7505).
  Only an import with the MX check looks this up (check_domains): a signup page
  does not make a person wait on DNS.

Syntax is not a flag: an address lists.validation refuses is never stored.
"""

import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from autoresponder import dns

from .validation import normalize_email

log = logging.getLogger(__name__)

# Local parts that name a function rather than a person, compared after role_key() (lower case,
# +tag cut off, dots, hyphens and underscores removed: "No-Reply+x" is "noreply"). Chosen as:
# - RFC 2142's mailbox names for services and network operations (info, marketing, sales,
#   support, abuse, noc, security, postmaster, hostmaster, usenet, news, webmaster, www, uucp, ftp);
#   info@ included on purpose: it is the classic shared inbox;
# - the mail system's own addresses (mailer-daemon, root, no-reply, bounce, list servers), which no
#   person reads;
# - the shared inboxes of a company's departments (billing, hr, jobs, press, legal, office, …),
#   in English and, for "contact", in the commonest other spellings.
# Not listed: words that are also names or initials (e.g. "pr", "dev", "ceo"), so a person is
# rarely flagged as a role.
ROLE_LOCAL_PARTS = frozenset({
    # RFC 2142
    "info", "marketing", "sales", "support", "abuse", "noc", "security", "postmaster", "hostmaster",
    "usenet", "news", "webmaster", "www", "uucp", "ftp",
    # the mail system
    "mailerdaemon", "root", "daemon", "nobody", "noreply", "donotreply", "noresponse", "bounce", "bounces",
    "listserv", "majordomo", "unsubscribe", "sysadmin", "admin", "administrator", "devnull",
    # shared inboxes
    "office", "contact", "contactus", "kontakt", "contacto", "contato", "hello", "help", "helpdesk",
    "service", "customerservice", "customercare", "customersupport", "feedback", "enquiries", "enquiry",
    "inquiries", "inquiry", "billing", "accounts", "accounting", "finance", "invoice", "invoices", "orders",
    "hr", "jobs", "careers", "recruiting", "press", "media", "privacy", "legal", "compliance", "team",
    "staff", "all", "everyone", "reception", "it", "techsupport", "registrar", "spam",
})

DATA_FILE = Path(__file__).resolve().parent / "data" / "disposable_domains.txt"

ROLE, DISPOSABLE, NO_MX = "role", "disposable", "no_mx"
LABELS = {ROLE: "role address", DISPOSABLE: "throwaway domain", NO_MX: "no mail server"}
FIELDS = {ROLE: "is_role_address", DISPOSABLE: "is_disposable_address", NO_MX: "has_no_mx"}
ANY = "any"  # the subscriber index's filter: any of the three
FILTER_CHOICES = [(ANY, "Any flag"), (ROLE, "Role addresses"), (DISPOSABLE, "Throwaway domains"),
                  (NO_MX, "No mail server")]

DISPOSABLE_SIGNUP_MESSAGE = (
    "This address is at a throwaway mail service, and this list does not accept those. "
    "Please sign up with the address you read every day."
)

# MX look-ups (check_domains)
MX_OK, MX_NONE, MX_UNKNOWN = "ok", "none", "unknown"
MX_CACHE_SECONDS = 86_400  # an answer, "has mail servers" or "has none", is kept a day
MX_THREADS = 16  # look-ups in flight at once; each waits on the network, not the CPU
DEFAULT_MX_SECONDS = 120  # the whole MX check of one import stops after this (settings.HYGIENE_MX_SECONDS)


@dataclass(frozen=True)
class Flags:
    role: bool = False
    disposable: bool = False
    no_mx: bool = False

    def __bool__(self):
        return self.role or self.disposable or self.no_mx

    def fields(self):
        """As Subscriber field values."""
        return {FIELDS[ROLE]: self.role, FIELDS[DISPOSABLE]: self.disposable, FIELDS[NO_MX]: self.no_mx}

    @property
    def labels(self):
        return [LABELS[name] for name in (ROLE, DISPOSABLE, NO_MX) if getattr(self, name)]


def split(email):
    """(local part, lower-cased domain); the domain follows the last @ (a quoted local part may hold one)."""
    local, _, domain = email.strip().rpartition("@")
    return local, domain.lower()


_STRIP = str.maketrans("", "", ".-_")


def role_key(local):
    """The local part as ROLE_LOCAL_PARTS lists it. lists.hygiene_import.ROLE_KEY_SQL is the same in SQL."""
    return local.lower().split("+", 1)[0].translate(_STRIP)


def is_role_address(email):
    return role_key(split(email)[0]) in ROLE_LOCAL_PARTS


@lru_cache(maxsize=1)
def disposable_domains():
    lines = DATA_FILE.read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip() and not line.startswith("#"))


def is_disposable_domain(domain):
    """The domain or one of its parents (mx.mailinator.com: mailinator.com) is a throwaway service."""
    labels = domain.strip().rstrip(".").lower().split(".")
    listed = disposable_domains()
    return any(".".join(labels[n:]) in listed for n in range(len(labels) - 1))


def is_disposable_address(email):
    return is_disposable_domain(split(email)[1])


def classify(email, *, check_mx=False):
    """The Flags of an address; raises lists.validation.InvalidSubscriber for one that is not valid.

    `check_mx` looks the domain up (cached for a day); a domain the DNS cannot answer for now is
    not flagged.
    """
    email = normalize_email(email)
    domain = split(email)[1]
    no_mx = check_mx and check_domains([domain]).get(domain) == MX_NONE
    return Flags(role=is_role_address(email), disposable=is_disposable_domain(domain), no_mx=no_mx)


# --- MX -----------------------------------------------------------------------------------------


def mail_domain_status(domain, res=None):
    """MX_OK or MX_NONE for one domain; raises autoresponder.dns.DNSLookupError when the DNS cannot say."""
    hosts = dns.mx(domain, res)
    if hosts:
        # Only a null MX ("0 ."): the domain says it accepts no mail.
        return MX_OK if any(host for _, host in hosts) else MX_NONE
    # No MX at all: mail goes to the domain's own address, if it has one (the "implicit MX").
    return MX_OK if dns.addresses(domain, res) else MX_NONE


def _cache_key(domain):
    return f"lists:mx:{domain}"


def check_domains(domains, *, seconds=None, threads=MX_THREADS):
    """{domain: MX_OK | MX_NONE | MX_UNKNOWN} for each domain, looked up at most once a day.

    Answers come from the cache (Redis in production), both "ok" and "none"; the rest are looked
    up concurrently by `threads` threads, and whatever is not answered within `seconds` (default:
    settings.HYGIENE_MX_SECONDS) is MX_UNKNOWN, as is a domain the DNS could not answer for
    (timeout, SERVFAIL): unknown is never cached and never flagged.
    """
    domains = sorted({d.strip().rstrip(".").lower() for d in domains if d and d.strip()})
    cached = cache.get_many([_cache_key(d) for d in domains])
    found = {d: cached[_cache_key(d)] for d in domains if _cache_key(d) in cached}
    missing = [d for d in domains if d not in found]
    if missing:
        budget = getattr(settings, "HYGIENE_MX_SECONDS", DEFAULT_MX_SECONDS) if seconds is None else seconds
        answered = _look_up(missing, budget, threads)
        cache.set_many({_cache_key(d): s for d, s in answered.items()}, MX_CACHE_SECONDS)
        found.update(answered)
    return {d: found.get(d, MX_UNKNOWN) for d in domains}


def _look_up(domains, seconds, threads):
    """Answers for the domains that the DNS answered within `seconds`."""
    local = threading.local()

    def one(domain):
        if not hasattr(local, "resolver"):
            local.resolver = dns.resolver()
        return domain, mail_domain_status(domain, local.resolver)

    answered, deadline = {}, time.monotonic() + seconds
    pool = ThreadPoolExecutor(max_workers=max(1, min(threads, len(domains))), thread_name_prefix="mx")
    try:
        pending = {pool.submit(one, d) for d in domains}
        while pending and time.monotonic() < deadline:
            done, pending = wait(pending, timeout=deadline - time.monotonic(), return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    domain, status = future.result()
                except dns.DNSLookupError as exc:
                    log.info("MX check: %s", exc)
                    continue
                answered[domain] = status
        if pending:
            log.warning("MX check stopped after %s s with %s domain(s) not looked up", seconds, len(pending))
    finally:
        # Queued look-ups are dropped; those in flight end within the resolver's own timeout.
        pool.shutdown(wait=False, cancel_futures=True)
    return answered
