"""
From a ledger row to a message ready for the wire.

A `Job` holds everything that does not depend on the subscriber — the compiled
template (Liquid parsed, layout applied, CSS inlined once), the sender, the
list — and is cached per process for the broadcast, so each message costs one
Liquid render, a few HMAC tokens, the hand-built MIME and, on the SMTP path
with a key, one DKIM signature.
"""

import hashlib
import html
import time
from types import SimpleNamespace

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.db import IntegrityError, transaction

from autoresponder import tokens

from . import dkim, inbound, mime, rendering
from .backends import Envelope
from .domains import signers_for as domain_signers
from .ledger import reconnecting
from .models import Link

UNSUBSCRIBE, CLICK, OPEN, VIEW, MESSAGE_ID = "unsubscribe", "click", "open", "view", "message-id"
_JOBS = {}
_SIGNERS = {}
_LINKS = {}
_AFFIXES = {}
_CACHE_LIMIT = 50_000
SIGNERS_SECONDS = 60


class NotSendable(Exception):
    """This message (or the whole broadcast) cannot go out as written; the text says why."""


# --- Public URLs of a message -------------------------------------------------------------


def _setting(name):
    """A setting read per message, kept per process (through `django.conf.settings` each read
    cost 0.3 us, about 15 a message); forgotten when a test overrides settings."""
    try:
        return _SETTINGS[name]
    except KeyError:
        value = _SETTINGS[name] = getattr(settings, name)
        return value


_SETTINGS = {}


@receiver(setting_changed)
def _forget_settings(**kwargs):
    _SETTINGS.clear()


def unsubscribe_url(message_pk):
    return f"{_setting('SITE_URL')}/u/{tokens.sign(UNSUBSCRIBE, message_pk)}"


def open_url(message_pk):
    return f"{_setting('SITE_URL')}/o/{tokens.sign(OPEN, message_pk)}.gif"


def click_url(message_pk, link_pk):
    return f"{_setting('SITE_URL')}/c/{tokens.sign(CLICK, message_pk, link_pk)}"


def view_url(message_pk):
    return f"{_setting('SITE_URL')}/v/{tokens.sign(VIEW, message_pk)}"


def message_id_for(message_pk):
    """Our Message-ID: the signed ledger id, so a bounce quoting it maps back to the row."""
    return f"<{tokens.sign(MESSAGE_ID, message_pk)}@{_setting('MESSAGE_ID_DOMAIN')}>"


def preferences_url(subscriber):
    """lists.tokens.preferences_url, with the URL resolved once per process instead of
    once per message (reverse() was a tenth of the per-message cost)."""
    from lists.tokens import preferences_token

    key = (_setting("SITE_URL"), "preferences")
    if key not in _AFFIXES:
        from django.urls import reverse

        before, _, after = reverse("lists:public_preferences", args=["TOKEN"]).partition("TOKEN")
        _AFFIXES[key] = (settings.SITE_URL + before, after)
    before, after = _AFFIXES[key]
    return f"{before}{preferences_token(subscriber)}{after}"


def link_pk(url):
    """The stored Link for `url` (created on first use), cached per process."""
    found = _LINKS.get(url)
    if found is None:
        if len(_LINKS) > _CACHE_LIMIT:
            _LINKS.clear()
        found = _LINKS[url] = _store_link(url)
    return found


@reconnecting
def _store_link(url):
    digest = hashlib.sha256(url.encode()).hexdigest()
    try:
        with transaction.atomic():
            return Link.objects.get_or_create(url_hash=digest, defaults={"url": url})[0].pk
    except IntegrityError:  # another worker stored it at the same moment
        return Link.objects.get(url_hash=digest).pk


# --- Context ---------------------------------------------------------------------------------


def subscriber_context(email, name, attributes):
    """What `{{ subscriber.… }}` can read: plain strings and the attributes."""
    attributes = attributes if isinstance(attributes, dict) else {}
    first, _, last = (name or "").strip().partition(" ")
    context = {k: v for k, v in attributes.items() if isinstance(k, str)}
    context.update({
        "email": email, "name": name or "",
        "first_name": attributes.get("first_name") or first,
        "last_name": attributes.get("last_name") or last.strip(),
        "attributes": attributes,
    })
    return context


def _check_header_values(sender):
    for label, value in (("From name", sender.from_name), ("From address", sender.from_email),
                         ("Reply-To", sender.reply_to)):
        if "\r" in value or "\n" in value or "\x00" in value:
            raise NotSendable(f"The sender's {label} contains a line break; fix the sender identity, then resume.")


class Job:
    """One broadcast, compiled once, turned into envelopes message by message."""

    @classmethod
    def for_broadcast(cls, broadcast):
        key = (broadcast.pk, broadcast.updated_at)
        job = _JOBS.get(key)
        if job is None:
            if len(_JOBS) > 16:
                _JOBS.clear()
            job = _JOBS[key] = cls(broadcast)
        return job

    def __init__(self, broadcast):
        self.broadcast_id = broadcast.pk
        self.sender = broadcast.sender
        _check_header_values(self.sender)
        try:
            self.prepared = rendering.prepare(
                subject=broadcast.subject, body=broadcast.body, body_format=broadcast.body_format,
                text_body=broadcast.text_body, layout=broadcast.layout.html if broadcast.layout_id else None,
            )
        except rendering.TemplateError as exc:
            raise NotSendable(f"The {exc.part or 'template'} cannot be rendered: {exc}") from exc
        first_list = broadcast.lists.order_by("pk").first()
        self.list_context = {
            "name": first_list.name if first_list else self.sender.from_name,
            "description": first_list.description if first_list else "",
        }
        self.sender_context = {
            "name": self.sender.from_name, "from_name": self.sender.from_name, "email": self.sender.from_email,
            "reply_to": self.sender.reply_to, "postal_address": self.sender.postal_address,
        }
        self._fully_checked = False
        self._signers = {}
        self._address_lines = [line.strip() for line in self.sender.postal_address.splitlines() if line.strip()]
        self._address_html = [html.escape(line, quote=False) for line in self._address_lines]
        # Tracking happens only where the broadcast and every one of its lists allow it.
        lists = broadcast.lists.all()
        self.track_opens = broadcast.track_opens and not lists.filter(track_opens=False).exists()
        self.track_clicks = broadcast.track_clicks and not lists.filter(track_clicks=False).exists()
        self.tags = [f"broadcast-{broadcast.pk}"]

    def context(self, message_pk, subscriber):
        return {
            "subscriber": subscriber_context(subscriber.email, subscriber.name, subscriber.attributes),
            "list": self.list_context,
            "sender": self.sender_context,
            "unsubscribe_url": unsubscribe_url(message_pk),
            "preferences_url": preferences_url(subscriber) if subscriber.pk else "",
            "view_in_browser_url": view_url(message_pk),
        }

    def render(self, message_pk, subscriber):
        """(context, Rendered) for one message; raises NotSendable with the reason."""
        context = self.context(message_pk, subscriber)
        rewrite = (lambda url: self._tracked(message_pk, url)) if self.track_clicks else None
        pixel = open_url(message_pk) if self.track_opens else None
        try:
            rendered = self.prepared.render(context, rewrite_url=rewrite, open_pixel_url=pixel)
        except rendering.TemplateError as exc:
            raise NotSendable(f"The template failed for this subscriber: {exc}") from exc
        self._check_compliance(rendered, context["unsubscribe_url"])
        return context, rendered

    def _check_compliance(self, rendered, unsubscribe):
        """The full check (a visible unsubscribe link, the postal address in both parts) on
        this process's first message of the job; then, per message, that the link and the
        address are still there: a template that drops them for some subscribers only
        (an {% if %} around the footer) is caught, at a tenth of the cost."""
        if (
            self._fully_checked and unsubscribe in rendered.html and unsubscribe in rendered.text
            and all(line in rendered.html for line in self._address_html)
            and all(line in rendered.text for line in self._address_lines)
        ):
            return
        problems = rendering.check_compliance(
            rendered.html, rendered.text, unsubscribe_url=unsubscribe, postal_address=self.sender.postal_address
        )
        if problems:
            raise NotSendable("Not sent: " + " ".join(problems))
        self._fully_checked = True

    @staticmethod
    def _tracked(message_pk, url):
        # Our own pages (view in browser, preferences) are not tracked: their URLs are
        # personal, and each would become a stored Link per message.
        if url.startswith(_setting("SITE_URL") + "/"):
            return url
        return click_url(message_pk, link_pk(url))

    def envelope(self, row, *, with_raw, backend):
        subscriber = SimpleNamespace(
            pk=row["subscriber_id"], email=row.get("subscriber__email") or row["email"],
            name=row["subscriber__name"] or "", attributes=row["subscriber__attributes"] or {},
        )
        context, rendered = self.render(row["pk"], subscriber)
        envelope = Envelope(
            ledger_id=row["pk"], from_name=self.sender.from_name, from_email=self.sender.from_email,
            to_email=row["email"], to_name=subscriber.name, subject=rendered.subject, html=rendered.html,
            text=rendered.text, message_id=message_id_for(row["pk"]), reply_to=self.sender.reply_to,
            headers=list_unsubscribe_headers(context["unsubscribe_url"], mailto=inbound.unsubscribe_mailto(row["pk"])),
            tags=self.tags, return_path=inbound.return_path(row["pk"]) if backend and not backend.is_esp else "",
        )
        if with_raw:
            envelope.raw = build_raw(envelope, backend, signers=self.signers(backend))
        return envelope

    def signers(self, backend):
        """The DKIM signers for this job's From address, looked up again every minute (a
        sending domain added or verified mid-broadcast signs the rest of it)."""
        now = time.monotonic()
        key = backend.pk if backend else None
        found = self._signers.get(key)
        if found is None or found[0] < now:
            found = self._signers[key] = (now + SIGNERS_SECONDS, signers_for(backend, self.sender.from_email))
        return found[1]


def list_unsubscribe_headers(url, *, mailto=None):
    """RFC 2369 + RFC 8058: one-click unsubscribe by POST to the https URL (plus mailto when set;
    campaigns.inbound.unsubscribe_mailto gives each message its own address when the mailbox is read)."""
    value = f"<{url}>"
    mailto = settings.UNSUBSCRIBE_MAILTO if mailto is None else mailto
    if mailto:
        value += f", <mailto:{mailto}?subject=unsubscribe>"
    return {"List-Unsubscribe": value, "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}


def build_raw(envelope, backend, *, signers=None):
    try:
        raw = mime.build_message(
            from_name=envelope.from_name, from_email=envelope.from_email, to_email=envelope.to_email,
            to_name=envelope.to_name, subject=envelope.subject, html=envelope.html, text=envelope.text,
            message_id=envelope.message_id, reply_to=envelope.reply_to, headers=envelope.headers,
        )
    except ValueError as exc:  # HeaderInjection is a ValueError too
        raise NotSendable(f"Not sent: {exc}") from exc
    for signer in signers_for(backend, envelope.from_email) if signers is None else signers:
        raw = signer.sign(raw)
    return raw


def signers_for(backend, from_email):
    """On the SMTP path: the keys of the From domain's sending domain (campaigns/domains.py), else the
    backend's own DKIM key; ESPs sign themselves."""
    if backend is None or backend.kind != backend.SMTP:
        return []
    signers = domain_signers(from_email)
    if not signers:
        signers = [signer] if (signer := signer_for(backend)) else []
    return signers


def signer_for(backend):
    if backend is None or not backend.has_dkim:
        return None
    key = (backend.pk, backend.updated_at)
    signer = _SIGNERS.get(key)
    if signer is None:
        signer = _SIGNERS[key] = dkim.Signer(backend.dkim_domain, backend.dkim_selector, backend.dkim_private_key)
    return signer
