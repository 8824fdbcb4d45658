"""
The pre-send check: a broadcast or a sequence step as a mailbox provider will
see it, checked before it goes.

A check is a function that takes a `Sample` — the message rendered for one
subscriber (the chosen one, else the first of the audience, else a sample
person) exactly as the pipeline renders it, tracked links and open pixel
included, built into the MIME bytes that would go on the wire and parsed back —
and returns zero or more `Result`s. Errors block sending (campaigns.broadcasts
refuses to start or schedule); warnings and oks are shown.

Other modules add checks with the decorator and must be imported at start-up
(campaigns/apps.py `ready()`), so that every process runs the same checks::

    from campaigns import presend

    @presend.check
    def from_domain_authenticated(sample):
        ok, reason = is_authenticated(sample.from_domain)
        return presend.Result(presend.OK if ok else presend.WARNING, "From domain authenticated", reason)

The sample is rendered without storing anything: tracked links get a stand-in
link id instead of a stored `Link`, and the message is not DKIM-signed (the
signature changes neither what the checks read nor the size that matters).
"""

import email
import email.policy
import hashlib
import html as html_lib
import ipaddress
import logging
import re
from dataclasses import dataclass
from functools import cached_property
from types import SimpleNamespace
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache

from . import inbound, mime, rendering, spamassassin
from .composing import Job, NotSendable, click_url, list_unsubscribe_headers, message_id_for, open_url

log = logging.getLogger(__name__)

ERROR, WARNING, OK = "error", "warning", "ok"
LEVELS = (ERROR, WARNING, OK)

# Gmail shows "[Message clipped] View entire message" when a message's HTML passes
# 102 KB, hiding the rest — the footer with the unsubscribe link and the open pixel
# included. It counts the HTML's bytes, not the encoded MIME, so that is what we measure.
GMAIL_CLIP_BYTES = 102 * 1024
# Filters read text: a message that is mostly pictures looks like image spam (its
# words can hide in the pictures). Measured on the visible words of the HTML part.
WORDS_PER_IMAGE = 50
SPAM_CACHE_SECONDS = 24 * 3600
# Stands in for a stored Link's id in the sample's tracked URLs (nothing is stored).
_SAMPLE_LINK_PK = 1_000_000

# Hosts recipients cannot reach: loopback, private and link-local addresses, and the
# names reserved for local use (RFC 6761, RFC 6762, RFC 8375).
_DEV_NAMES = ("localhost",)
_DEV_SUFFIXES = (".localhost", ".local", ".test", ".internal", ".lan", ".home.arpa")
_IMG = re.compile(r"<img\b[^>]*>", re.I)
_SRC = re.compile(r"""\bsrc\s*=\s*(?:"([^"]*)"|'([^']*)')""", re.I)


@dataclass(frozen=True)
class Result:
    level: str  # ERROR, WARNING or OK
    title: str  # what was checked, e.g. "Plain-text part"
    detail: str = ""  # what was found and, when it is not OK, what to do

    @property
    def is_error(self):
        return self.level == ERROR


_CHECKS = {}


def check(function):
    """Register `function(sample) -> Result | list[Result] | None` as a pre-send check."""
    _CHECKS[f"{function.__module__}.{function.__qualname__}"] = function
    return function


register = check


# --- The sample message ------------------------------------------------------------------------


@dataclass
class Sample:
    """One rendered message of a broadcast or step, as the checks see it."""

    target: object  # the broadcast, or the step shaped like one (campaigns.step_sending.as_broadcast)
    kind: str  # "broadcast" or "step"
    sender: object
    backend: object  # the Backend that would send it now, or None
    subscriber: object
    subject: str
    html: str
    text: str
    headers: dict
    raw: bytes
    links: tuple  # every http(s) link as written in the message, before tracking
    unsubscribe_url: str

    @cached_property
    def message(self):
        """The raw message parsed back (email.message.EmailMessage)."""
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def from_domain(self):
        return self.sender.from_email.rpartition("@")[2].lower()

    @property
    def is_local_outbox(self):
        from .models import Backend

        return self.backend is not None and self.backend.kind == Backend.OUTBOX

    @cached_property
    def image_urls(self):
        return tuple(_src(tag) for tag in _IMG.findall(self.html) if _src(tag))

    def content_hash(self):
        """What identifies the message for a cache: everything but the Date and the MIME boundary."""
        parts = [self.sender.from_email, self.sender.from_name, self.subject, self.html, self.text,
                 repr(sorted(self.headers.items()))]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _src(tag):
    match = _SRC.search(tag)
    return html_lib.unescape(match.group(1) if match.group(1) is not None else match.group(2)) if match else ""


def shape(target):
    """(broadcast-shaped target, "broadcast" or "step") for a Broadcast, a draft or a Step."""
    from .models import Step
    from .step_sending import as_broadcast

    if isinstance(target, Step):
        return as_broadcast(target), "step"
    return target, "broadcast"


def sample_subscriber(shaped):
    """The first subscriber of the audience, else the preview's sample person."""
    from . import ledger
    from .dashboard_services import sample_subscriber as sample_person

    first = ledger.audience(shaped).values("pk", "email", "name", "attributes").first()
    return SimpleNamespace(**first) if first else sample_person()


def build_sample(target, *, subscriber=None):
    """Render `target` for `subscriber` as the pipeline would; raises NotSendable."""
    from .sending import pick_backend

    shaped, kind = shape(target)
    job = Job(shaped)
    subscriber = subscriber or sample_subscriber(shaped)
    context = job.context(0, subscriber)
    links = []

    def rewrite(url):
        links.append(url)
        if job.track_clicks and not url.startswith(settings.SITE_URL + "/"):
            return click_url(0, _SAMPLE_LINK_PK)
        return url

    try:
        rendered = job.prepared.render(context, rewrite_url=rewrite,
                                       open_pixel_url=open_url(0) if job.track_opens else None)
    except rendering.TemplateError as exc:
        raise NotSendable(f"The template failed for this subscriber: {exc}") from exc
    headers = list_unsubscribe_headers(context["unsubscribe_url"], mailto=inbound.unsubscribe_mailto(0))
    try:
        raw = mime.build_message(
            from_name=job.sender.from_name, from_email=job.sender.from_email, to_email=subscriber.email,
            to_name=subscriber.name or "", subject=rendered.subject, html=rendered.html, text=rendered.text,
            message_id=message_id_for(0), reply_to=job.sender.reply_to, headers=headers,
        )
    except ValueError as exc:
        raise NotSendable(f"The message cannot be built: {exc}") from exc
    return Sample(
        target=shaped, kind=kind, sender=job.sender, backend=pick_backend(shaped), subscriber=subscriber,
        subject=rendered.subject, html=rendered.html, text=rendered.text, headers=headers, raw=raw,
        links=tuple(dict.fromkeys(links)), unsubscribe_url=context["unsubscribe_url"],
    )


# --- Running ---------------------------------------------------------------------------------------


def run(target, *, subscriber=None):
    """Every check's results for a Broadcast, a composer draft or a sequence Step, in the order
    the checks were registered. A message that cannot be rendered is one error."""
    try:
        sample = build_sample(target, subscriber=subscriber)
    except NotSendable as exc:
        return [Result(ERROR, "The message renders", str(exc))]
    results = []
    for name, function in list(_CHECKS.items()):
        results.extend(_call(name, function, sample))
    return results


def _call(name, function, sample):
    try:
        found = function(sample)
    except Exception:  # a broken check must not hide the others' results nor block sending
        log.exception("Pre-send check %s failed", name)
        return [Result(WARNING, "A check could not run", f"The check {name} stopped with an error; see the log.")]
    if found is None:
        return []
    return [found] if isinstance(found, Result) else list(found)


def errors(results):
    return [result for result in results if result.is_error]


def counts(results):
    """{"error": n, "warning": n, "ok": n}, for a summary line."""
    return {level: sum(1 for r in results if r.level == level) for level in LEVELS}


# --- The checks ---------------------------------------------------------------------------------


@check
def unsubscribe_link_and_postal_address(sample):
    """The rule campaigns.composing enforces per message at send time, checked ahead."""
    problems = rendering.check_compliance(sample.html, sample.text, unsubscribe_url=sample.unsubscribe_url,
                                          postal_address=sample.sender.postal_address)
    title = "Unsubscribe link and postal address"
    if problems:
        return Result(ERROR, title, " ".join(problems))
    return Result(OK, title, "Both parts have a visible unsubscribe link and the sender's postal address.")


@check
def list_unsubscribe_headers_present(sample):
    title = "One-click unsubscribe headers"
    header = sample.message["List-Unsubscribe"]
    post = sample.message["List-Unsubscribe-Post"]
    urls = re.findall(r"<(https?://[^>]+)>", str(header or ""))
    if not urls or str(post or "") != "List-Unsubscribe=One-Click":
        return Result(ERROR, title, "List-Unsubscribe with a web address and List-Unsubscribe-Post are missing; "
                                    "Gmail and Yahoo refuse bulk mail without them.")
    if not urls[0].startswith("https://"):
        return Result(WARNING, title, f"List-Unsubscribe points to {urls[0].split('/u/')[0]}, which is not https; "
                                      "Gmail and Yahoo offer one-click unsubscribe for https addresses only. "
                                      "Set SITE_URL to this app's https address.")
    mailto = " and a mailto address" if "<mailto:" in str(header) else ""
    return Result(OK, title, f"List-Unsubscribe (an https address{mailto}) and List-Unsubscribe-Post are set.")


@check
def text_part_present(sample):
    title = "Plain-text part"
    part = sample.message.get_body(preferencelist=("plain",))
    words = len(part.get_content().split()) if part is not None else 0
    if not words:
        return Result(ERROR, title, "The message has no plain-text part. Write a text version, or put text "
                                    "(not only images) in the HTML so one can be made from it.")
    return Result(OK, title, f"A plain-text part of {words} word{'s' if words != 1 else ''} goes with the HTML.")


@check
def size_under_gmail_clipping(sample):
    title = "Size (Gmail clips at 102 KB)"
    size = len(sample.html.encode("utf-8"))
    shown = f"{size / 1024:.1f} KB"
    if size > GMAIL_CLIP_BYTES:
        return Result(WARNING, title, f"The HTML is {shown}. Gmail clips messages over 102 KB and hides the rest, "
                                      "the unsubscribe link and the open pixel included, behind “View entire "
                                      "message”. Shorten it, or move long parts to a web page and link to it.")
    return Result(OK, title, f"The HTML is {shown}, under Gmail's 102 KB clipping limit.")


def is_dev_host(host):
    """True for a host recipients cannot reach: localhost, a private or loopback address, *.local…"""
    host = (host or "").strip("[]").rstrip(".").lower()
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host in _DEV_NAMES or host.endswith(_DEV_SUFFIXES)
    return address.is_loopback or address.is_private or address.is_link_local or address.is_unspecified


def _host(url):
    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


@check
def no_development_links(sample):
    title = "No links to a development address"
    # With the local outbox nothing leaves this machine: trying the app out on localhost is fine.
    level = WARNING if sample.is_local_outbox else ERROR
    found = []
    if is_dev_host(settings.SITE_HOST):
        found.append(Result(level, title, f"The unsubscribe, tracking and view-in-browser links point to "
                                          f"{settings.SITE_URL} (SITE_URL), which recipients cannot open. "
                                          "Set SITE_URL to this app's public https address."))
    own = settings.SITE_URL + "/"
    local = [url for url in (*sample.links, *sample.image_urls)
             if not url.startswith(own) and is_dev_host(_host(url))]
    local = list(dict.fromkeys(local))
    if local:
        count = len(local)
        found.append(Result(level, title, f"{count} link{'s' if count != 1 else ''} or image{'s' if count != 1 else ''}"
                                          f" point to a development address recipients cannot open: "
                                          f"{', '.join(local[:5])}{' …' if count > 5 else ''}. "
                                          "Use the public address instead."))
    return found or Result(OK, title, "No link or image points to localhost or another development address.")


@check
def image_to_text_balance(sample):
    title = "Images and text"
    pixel = open_url(0)
    images = [url for url in sample.image_urls if url != pixel]
    words = len(rendering._visible_text(sample.html).split())
    plural = "s" if len(images) != 1 else ""
    if images and words < WORDS_PER_IMAGE * len(images):
        return Result(WARNING, title, f"{len(images)} image{plural} and only {words} words: filters read text, "
                                      "and a message made mostly of pictures looks like image spam. Put the "
                                      f"message in words, at least {WORDS_PER_IMAGE} per image.")
    return Result(OK, title, f"{words} words and {len(images)} image{plural}.")


@check
def spamassassin_score(sample):
    """SpamAssassin's verdict when SPAMD_URL is set; cached by the message's content, so the
    composer's preview does not ask spamd again until the message changes."""
    if not settings.SPAMD_URL:
        return None
    title = "SpamAssassin"
    key = f"campaigns:presend:spamd:{sample.content_hash()}"
    report = cache.get(key)
    if report is None:
        try:
            report = spamassassin.check(sample.raw, settings.SPAMD_URL)
        except spamassassin.SpamdError as exc:
            return Result(WARNING, title, f"spamd at {settings.SPAMD_URL} did not answer ({exc}); the other "
                                          "checks ran. Start spamd, or clear SPAMD_URL to stop asking it.")
        cache.set(key, report, SPAM_CACHE_SECONDS)
    return _spam_result(title, report)


def _spam_result(title, report):
    fired = "; ".join(f"{rule.name} ({rule.score:+.1f}{', ' + rule.description if rule.description else ''})"
                      for rule in sorted(report.rules, key=lambda rule: -rule.score) if rule.score)
    score = f"Score {report.score:.1f} (spam from {report.threshold:.1f})"
    rules = f". Rules that fired: {fired}." if fired else "."
    if report.is_spam:
        return Result(ERROR, title, f"{score}: SpamAssassin calls this spam, and most filters would too{rules} "
                                    "Change what the rules point at, then check again.")
    if report.score >= report.threshold / 2:
        return Result(WARNING, title, f"{score}: close to the line{rules}")
    return Result(OK, title, f"{score}{rules}")
