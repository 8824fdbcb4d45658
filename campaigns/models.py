"""
What is sent and how: backends (sending routes), sender identities, layouts and
templates, broadcasts, and the message ledger with the tracked links.

The ledger (`Message`) is the queue: one row per intended email, claimed in
batches by the workers (see campaigns/ledger.py). Celery only rings the bell.
"""

import re
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from lists.models import MailingList, Segment, Subscriber, Tag

from .domain_names import validate_domain
from .fields import EncryptedTextField
from .scheduling import (
    AFTER_DELAY,
    DAYS,
    ON_DATE,
    UNIT_CHOICES,
    ScheduleError,
    Timing,
    Window,
    weekdays_from_mask,
)
from .throttle import validate as validate_domain_throttle
from .warmup import validate_schedule as validate_warmup_schedule

_DURATION = re.compile(r"^(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_retry_schedule(text):
    """'1m 5m 15m 30m 1h' -> [60, 300, 900, 1800, 3600]; the last delay repeats."""
    delays = []
    for item in re.split(r"[,\s]+", (text or "").strip()):
        match = _DURATION.match(item)
        if not match or int(match.group(1)) == 0:
            raise ValidationError(
                f"{item!r} is not a delay. Write delays such as 1m 5m 15m 30m 1h (s, m, h or d).",
                code="retry_schedule",
            )
        delays.append(int(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    return delays


def validate_retry_schedule(text):
    parse_retry_schedule(text)


class Backend(models.Model):
    """A sending route: an SMTP server, an ESP through django-anymail, or the local outbox."""

    SMTP, OUTBOX = "smtp", "outbox"
    AMAZON_SES, MANDRILL, SENDGRID, POSTMARK, MAILGUN, BREVO = (
        "amazon_ses", "mandrill", "sendgrid", "postmark", "mailgun", "brevo",
    )
    KIND_CHOICES = [
        (SMTP, "SMTP server"),
        (AMAZON_SES, "Amazon SES"),
        (MANDRILL, "Mandrill (Mailchimp Transactional)"),
        (SENDGRID, "SendGrid"),
        (POSTMARK, "Postmark"),
        (MAILGUN, "Mailgun"),
        (BREVO, "Brevo"),
        (OUTBOX, "Local outbox (nothing leaves this machine)"),
    ]
    ESP_KINDS = (AMAZON_SES, MANDRILL, SENDGRID, POSTMARK, MAILGUN, BREVO)
    NONE, STARTTLS, TLS = "none", "starttls", "tls"
    SECURITY_CHOICES = [(NONE, "None (plain)"), (STARTTLS, "STARTTLS"), (TLS, "Implicit TLS (SMTPS)")]

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=12, choices=KIND_CHOICES, default=SMTP)
    is_active = models.BooleanField(default=True)
    priority = models.PositiveSmallIntegerField(
        default=100, help_text="Lower goes first. A backend that cannot be reached hands its messages to the next."
    )
    # SMTP
    host = models.CharField(max_length=255, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: 25, 587 with STARTTLS, 465 with TLS.")
    security = models.CharField(max_length=10, choices=SECURITY_CHOICES, default=STARTTLS)
    username = models.CharField(max_length=255, blank=True)
    password = EncryptedTextField(blank=True)
    # ESPs: the API key (SES: access key id), a secret (SES: secret access key) and
    # options such as {"region": "eu-west-1"}, {"sender_domain": "mg.example.com"} or
    # {"api_url": "…"}.
    api_key = EncryptedTextField(blank=True)
    api_secret = EncryptedTextField(blank=True)
    esp_options = models.JSONField(default=dict, blank=True)
    # DKIM signing on the SMTP path (ESPs sign themselves).
    dkim_domain = models.CharField(max_length=255, blank=True)
    dkim_selector = models.CharField(max_length=63, blank=True)
    dkim_private_key = EncryptedTextField(blank=True)
    # Limits that hold across every worker (campaigns/ratelimit.py).
    rate_per_second = models.FloatField(default=0, help_text="Messages per second; 0 means no limit.")
    window_limit = models.PositiveIntegerField(
        default=0, help_text="At most this many messages per window (e.g. an ESP's daily quota); 0 means none."
    )
    window_seconds = models.PositiveIntegerField(default=86400, help_text="The window length: 86400 is a day.")
    price_per_thousand = models.DecimalField(
        max_digits=10, decimal_places=4, default=0, help_text="What 1,000 messages cost, for estimates."
    )
    retry_schedule = models.CharField(
        max_length=200, default="1m 5m 15m 30m 1h", validators=[validate_retry_schedule],
        help_text="Waits between attempts after a temporary failure; the last one repeats.",
    )
    give_up_after = models.DurationField(
        default=timedelta(days=2), help_text="A message still failing this long after its first attempt fails for good."
    )
    # Warm-up (campaigns/warmup.py): a daily cap that grows from the start date.
    warmup_schedule = models.CharField(
        max_length=500, blank=True, validators=[validate_warmup_schedule],
        help_text="Daily caps from the start date, e.g. 50 100 500 1000 5000 10000 20000 50000; after the last day "
        "there is no cap. Empty: no warm-up.",
    )
    warmup_started_on = models.DateField(
        null=True, blank=True, help_text="Day 1 of the warm-up, in the site's time zone. Empty: the day it is saved."
    )
    # Per mailbox provider limits on the SMTP path (campaigns/throttle.py).
    domain_throttle = models.CharField(
        max_length=500, blank=True, validators=[validate_domain_throttle],
        help_text="At most so many messages to one mailbox provider, e.g. google=600/min, microsoft=300/min, "
        "yahoo=300/min, *=120/min (* is each other domain). Empty: no per-domain limit.",
    )
    # Set on the backend defined by the EMAIL_URL variable, which is kept in step with it.
    env_key = models.CharField(max_length=20, blank=True, editable=False)
    # Health, written by the sending pipeline.
    last_ok_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    down_until = models.DateTimeField(
        null=True, blank=True, help_text="Unreachable: skipped by the pipeline until then."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["priority", "name"]
        constraints = [
            models.UniqueConstraint(fields=["env_key"], condition=~Q(env_key=""), name="backend_env_key_unique"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_esp(self):
        return self.kind in self.ESP_KINDS

    @property
    def has_dkim(self):
        return bool(self.kind == self.SMTP and self.dkim_domain and self.dkim_selector and self.dkim_private_key)

    @property
    def smtp_port(self):
        return self.port or {self.TLS: 465, self.STARTTLS: 587}.get(self.security, 25)

    def retry_delays(self):
        return parse_retry_schedule(self.retry_schedule)

    def clean(self):
        if self.kind == self.SMTP and not self.host:
            raise ValidationError({"host": "An SMTP backend needs the server's host name."})
        if bool(self.dkim_domain) != bool(self.dkim_selector):
            raise ValidationError({"dkim_selector": "DKIM needs both a domain and a selector."})


class SenderIdentity(models.Model):
    """Who a message is from, set up once and picked per broadcast and per sequence."""

    name = models.CharField(max_length=100, unique=True, help_text="For you, e.g. 'Newsletter'.")
    from_name = models.CharField(max_length=200)
    from_email = models.EmailField()
    reply_to = models.EmailField(blank=True)
    postal_address = models.TextField(help_text="Printed in every footer, as the law asks of marketing mail.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "sender identities"

    def __str__(self):
        return f"{self.from_name} <{self.from_email}>"


class SendingDomain(models.Model):
    """A domain mail is sent From: its DKIM keys (DkimKey) and the result of its DNS checks."""

    PENDING, VERIFIED, FAILING = "pending", "verified", "failing"
    STATUS_CHOICES = [
        (PENDING, "Pending: records not published yet"),
        (VERIFIED, "Verified"),
        (FAILING, "Failing: a record that was right has changed"),
    ]

    domain = models.CharField(max_length=253, unique=True, validators=[validate_domain])
    dmarc_rua = models.EmailField(
        "DMARC report address", blank=True,
        help_text="Receivers mail daily DMARC reports here (the rua= of the suggested DMARC record).",
    )
    return_path_domain = models.CharField(
        max_length=253, blank=True, validators=[validate_domain],
        help_text="The bounce (Return-Path) domain, when it is not BOUNCE_DOMAIN or this domain, e.g. "
                  "the custom MAIL FROM domain set up at your ESP.",
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    # [{"key", "title", "level": ok|warning|error, "detail", "fix", "record": {type, name, value}}]
    # written by campaigns.domain_checks.check.
    checks = models.JSONField(default=list, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True, help_text="When every check last passed.")
    # Warm-up of the From domain, whichever backend sends (campaigns/warmup.py).
    warmup_schedule = models.CharField(
        max_length=500, blank=True, validators=[validate_warmup_schedule],
        help_text="Daily caps for mail From this domain, through any backend, from the start date, e.g. "
        "50 100 500 1000 5000; after the last day there is no cap. Empty: no warm-up.",
    )
    warmup_started_on = models.DateField(
        null=True, blank=True, help_text="Day 1 of the warm-up, in the site's time zone. Empty: the day it is saved."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self):
        return self.domain

    @property
    def may_sign(self):
        return self.status in (self.PENDING, self.VERIFIED)


class DkimKey(models.Model):
    """One DKIM key pair of a sending domain, published at <selector>._domainkey.<domain>.

    Messages are signed with the active key of each algorithm (RSA, and Ed25519 as a
    second signature when there is one). Rotating adds a `next` key; the check makes it
    active once its record is published, and the old key becomes `retired`: shown until
    its record is removed from DNS and the key forgotten here.
    """

    RSA, ED25519 = "rsa", "ed25519"
    ALGORITHM_CHOICES = [(RSA, "RSA-2048"), (ED25519, "Ed25519")]
    NEXT, ACTIVE, RETIRED = "next", "active", "retired"
    STATE_CHOICES = [(NEXT, "Next (publish it)"), (ACTIVE, "Active (signs)"), (RETIRED, "Retired (remove it)")]

    domain = models.ForeignKey(SendingDomain, on_delete=models.CASCADE, related_name="keys")
    selector = models.CharField(max_length=63)
    algorithm = models.CharField(max_length=8, choices=ALGORITHM_CHOICES, default=RSA)
    private_key = EncryptedTextField()
    public_key = models.TextField(help_text="The p= value of the DNS record (base64).")
    state = models.CharField(max_length=8, choices=STATE_CHOICES, default=ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["domain", "algorithm", "created_at"]
        constraints = [
            models.UniqueConstraint(fields=["domain", "selector"], name="dkimkey_selector_unique"),
            models.UniqueConstraint(fields=["domain", "algorithm"], condition=Q(state="active"),
                                    name="dkimkey_one_active_per_algorithm"),
            models.UniqueConstraint(fields=["domain", "algorithm"], condition=Q(state="next"),
                                    name="dkimkey_one_next_per_algorithm"),
        ]

    def __str__(self):
        return f"{self.selector}._domainkey.{self.domain.domain} ({self.algorithm}, {self.state})"

    @property
    def record_name(self):
        return f"{self.selector}._domainkey.{self.domain.domain}"

    @property
    def record_value(self):
        return f"v=DKIM1; k={self.algorithm}; p={self.public_key}"

    def clean(self):
        for field in ("from_name", "from_email", "reply_to"):
            if re.search(r"[\r\n]", getattr(self, field) or ""):
                raise ValidationError({field: "Line breaks are not allowed here."})


BODY_FORMAT_CHOICES = [("html", "HTML"), ("markdown", "Markdown"), ("text", "Plain text")]


def _validate_liquid(source, field, *, layout=False):
    from . import rendering

    try:
        rendering.validate(source, layout=layout)
    except rendering.TemplateError as exc:
        raise ValidationError({field: str(exc)}) from exc


class Layout(models.Model):
    """A base template around every message's content (`{{ content }}` marks the slot)."""

    name = models.CharField(max_length=100, unique=True)
    html = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        _validate_liquid(self.html, "html", layout=True)


class Template(models.Model):
    """Saved content a broadcast (or a sequence step) starts from."""

    name = models.CharField(max_length=100, unique=True)
    subject = models.CharField(max_length=300)
    body = models.TextField()
    body_format = models.CharField(max_length=10, choices=BODY_FORMAT_CHOICES, default="html")
    text_body = models.TextField(blank=True, help_text="Empty: generated from the HTML.")
    layout = models.ForeignKey(Layout, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        _validate_content(self)


def _validate_content(obj):
    _validate_liquid(obj.subject, "subject")
    _validate_liquid(obj.body, "body")
    if obj.text_body:
        _validate_liquid(obj.text_body, "text_body")


class Broadcast(models.Model):
    """A one-off send to lists and/or a segment, now or at a time."""

    DRAFT, SCHEDULED, SENDING, PAUSED, SENT, CANCELLED = "draft", "scheduled", "sending", "paused", "sent", "cancelled"
    STATUS_CHOICES = [
        (DRAFT, "Draft"), (SCHEDULED, "Scheduled"), (SENDING, "Sending"),
        (PAUSED, "Paused"), (SENT, "Sent"), (CANCELLED, "Cancelled"),
    ]

    name = models.CharField(max_length=200)
    sender = models.ForeignKey(SenderIdentity, on_delete=models.PROTECT, related_name="broadcasts")
    subject = models.CharField(max_length=300)
    body = models.TextField()
    body_format = models.CharField(max_length=10, choices=BODY_FORMAT_CHOICES, default="html")
    text_body = models.TextField(blank=True, help_text="Empty: generated from the HTML.")
    layout = models.ForeignKey(Layout, on_delete=models.SET_NULL, null=True, blank=True)
    lists = models.ManyToManyField(MailingList, blank=True, related_name="broadcasts")
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, null=True, blank=True, related_name="broadcasts")
    backend = models.ForeignKey(
        Backend, on_delete=models.SET_NULL, null=True, blank=True, help_text="Empty: the backends in priority order."
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=DRAFT)
    scheduled_at = models.DateTimeField(null=True, blank=True)
    in_subscriber_time_zone = models.BooleanField(
        default=False, help_text="Send at the scheduled wall-clock time in each subscriber's time zone."
    )
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    pause_reason = models.TextField(blank=True)
    # Progress counters, moved with F() by the pipeline and recounted once when the
    # broadcast finishes, so the progress view never counts millions of rows.
    recipients_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    skipped_count = models.PositiveIntegerField(default=0)
    unknown_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    started_at = models.DateTimeField(null=True, blank=True)
    fanned_out_at = models.DateTimeField(null=True, blank=True, help_text="When the ledger rows were written.")
    finished_at = models.DateTimeField(null=True, blank=True)
    # Stored once when it finishes (campaigns.costs.record), so no page counts its ledger again.
    cost = models.DecimalField(
        max_digits=14, decimal_places=4, null=True, blank=True,
        help_text="What its sent messages cost, each at its backend's price per 1,000 when the broadcast finished.",
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # campaigns.tasks.kick looks for scheduled broadcasts that are due and
            # for started ones whose ledger is not written yet.
            models.Index(fields=["status", "scheduled_at"], name="broadcast_status_due"),
        ]

    def __str__(self):
        return self.name

    @property
    def is_editable(self):
        return self.status in (self.DRAFT, self.SCHEDULED)

    @property
    def done_count(self):
        return self.sent_count + self.failed_count + self.skipped_count + self.unknown_count + self.cancelled_count

    @property
    def pending_count(self):
        return max(0, self.recipients_count - self.done_count)

    @property
    def percent(self):
        if self.status == self.SENT:
            return 100
        return int(100 * self.done_count / self.recipients_count) if self.recipients_count else 0

    def clean(self):
        _validate_content(self)


class Sequence(models.Model):
    """An autoresponder: ordered steps that each subscriber who enters receives on their own clock.

    Who enters is decided by the trigger (a confirmed subscription to the list, a tag
    being added, or an API call) and discovered by the scheduler (campaigns.scheduler),
    since lists knows nothing of campaigns.
    """

    DRAFT, ACTIVE, PAUSED = "draft", "active", "paused"
    STATUS_CHOICES = [(DRAFT, "Draft"), (ACTIVE, "Running"), (PAUSED, "Paused")]
    ON_SUBSCRIBE, ON_TAG, ON_API = "subscribe", "tag", "api"
    TRIGGER_CHOICES = [
        (ON_SUBSCRIBE, "Subscribing to the list (on double opt-in lists: confirming)"),
        (ON_TAG, "A tag being added"),
        (ON_API, "Only when added through the API or by hand"),
    ]
    NEVER, AFTER_FINISHING, ALWAYS = "never", "after_finishing", "always"
    REENTRY_CHOICES = [
        (NEVER, "Never: each subscriber goes through once"),
        (AFTER_FINISHING, "Again after leaving it (finished or exited)"),
        (ALWAYS, "Always: a new trigger starts over from the first step"),
    ]

    name = models.CharField(max_length=200)
    mailing_list = models.ForeignKey(MailingList, on_delete=models.PROTECT, related_name="sequences")
    segment = models.ForeignKey(
        Segment, on_delete=models.PROTECT, null=True, blank=True, related_name="sequences",
        help_text="Only subscribers in this segment enter (checked when they enter).",
    )
    sender = models.ForeignKey(SenderIdentity, on_delete=models.PROTECT, related_name="sequences")
    backend = models.ForeignKey(
        Backend, on_delete=models.SET_NULL, null=True, blank=True, help_text="Empty: the backends in priority order."
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=DRAFT)
    trigger = models.CharField(max_length=10, choices=TRIGGER_CHOICES, default=ON_SUBSCRIBE)
    trigger_tag = models.ForeignKey(
        Tag, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="For the tag trigger: subscribers enter when they get this tag.",
    )
    enroll_existing = models.BooleanField(
        default=False, help_text="When switched on, also enroll those already subscribed (or tagged); "
        "otherwise only new ones enter.",
    )
    exit_tag = models.ForeignKey(
        Tag, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Subscribers who get this tag (e.g. 'customer') leave the sequence.",
    )
    reentry = models.CharField(max_length=16, choices=REENTRY_CHOICES, default=NEVER)
    skip_after_days = models.PositiveSmallIntegerField(
        default=3, help_text="A step due more than this many days ago (after a pause or downtime) is skipped, "
        "not sent late. 0: never skip.",
    )
    track_opens = models.BooleanField(default=True)
    track_clicks = models.BooleanField(default=True)
    pause_reason = models.TextField(blank=True)
    # "Only new subscribers": those confirmed (or tagged) after the first switch-on.
    activated_at = models.DateTimeField(null=True, blank=True, help_text="When it was first switched on.")
    tag_watermark = models.BigIntegerField(
        default=0, help_text="Tag rows up to this id existed when it was switched on (the 'only new' line)."
    )
    # Claimed by one scheduler at a time with a conditional UPDATE (campaigns.scheduler.discover).
    discovered_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self):
        return self.name

    @property
    def is_active(self):
        return self.status == self.ACTIVE


class Step(models.Model):
    """One mail of a sequence: its content, when it goes, and in which local hours."""

    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField(help_text="Order in the sequence; renumbered when steps are moved.")
    name = models.CharField(max_length=200, blank=True)
    is_active = models.BooleanField(default=True, help_text="A paused step is skipped; nobody waits for it.")
    # Timing (campaigns.scheduling.Timing)
    timing = models.CharField(
        max_length=5, default=AFTER_DELAY,
        choices=[(AFTER_DELAY, "After a delay"), (ON_DATE, "On a date from the subscriber's attributes")],
    )
    delay_amount = models.PositiveIntegerField(default=0, help_text="0 with the first step: at once (a welcome mail).")
    delay_unit = models.CharField(max_length=7, choices=UNIT_CHOICES, default=DAYS)
    window_start_hour = models.PositiveSmallIntegerField(null=True, blank=True)
    window_end_hour = models.PositiveSmallIntegerField(null=True, blank=True)
    window_weekdays = models.PositiveSmallIntegerField(default=127, help_text="Bit 0 Monday … bit 6 Sunday.")
    date_attribute = models.CharField(max_length=100, blank=True, help_text="e.g. birthday (YYYY-MM-DD or MM-DD).")
    date_offset_days = models.SmallIntegerField(default=0, help_text="-7: a week before the date.")
    yearly = models.BooleanField(default=True)
    # Content, as in broadcasts
    subject = models.CharField(max_length=300)
    body = models.TextField()
    body_format = models.CharField(max_length=10, choices=BODY_FORMAT_CHOICES, default="html")
    text_body = models.TextField(blank=True, help_text="Empty: generated from the HTML.")
    layout = models.ForeignKey(Layout, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sequence", "position", "id"]
        indexes = [models.Index(fields=["sequence", "position"], name="step_sequence_position")]

    def __str__(self):
        return self.name or f"Step {self.position}"

    def window(self):
        return Window(self.window_start_hour, self.window_end_hour, weekdays_from_mask(self.window_weekdays))

    def timing_rule(self):
        return Timing(
            kind=self.timing, amount=self.delay_amount, unit=self.delay_unit, window=self.window(),
            date_attribute=self.date_attribute, offset_days=self.date_offset_days, yearly=self.yearly,
        )

    def clean(self):
        _validate_content(self)
        try:
            self.window()
        except ScheduleError as exc:
            raise ValidationError({"window_weekdays": str(exc)}) from exc
        if self.timing == ON_DATE and not self.date_attribute.strip():
            raise ValidationError({"date_attribute": "Name the attribute that holds the date, e.g. birthday."})


class Enrollment(models.Model):
    """A subscriber's way through a sequence: where they are and when their next step is due.

    `position` is the position of the last step handled (sent or skipped); the next
    step is the first live step after it. `next_step` records which step
    `next_step_at` was computed for, so the scheduler notices a step inserted,
    paused or deleted meanwhile and plans again instead of sending the wrong one.
    `entry` counts entries (re-entry, yearly rounds): the ledger is unique per
    (subscriber, step, entry).
    """

    ACTIVE, FINISHED, EXITED = "active", "finished", "exited"
    STATUS_CHOICES = [(ACTIVE, "In the sequence"), (FINISHED, "Finished"), (EXITED, "Left early")]
    UNSUBSCRIBED, SUPPRESSED, BLOCKLISTED, EXIT_TAG, REMOVED = (
        "unsubscribed", "suppressed", "blocklisted", "exit_tag", "removed",
    )
    EXIT_CHOICES = [
        (UNSUBSCRIBED, "Unsubscribed from the list"),
        (SUPPRESSED, "Address suppressed"),
        (BLOCKLISTED, "Subscriber blocklisted"),
        (EXIT_TAG, "Got the exit tag"),
        (REMOVED, "Removed by hand or through the API"),
    ]

    # Every index here is rewritten whenever the scheduler advances a row (the updates
    # are never HOT: next_step_at is indexed), so there are as few as the queries need:
    # `subscriber` is covered by enrollment_unique (subscriber first: a subscriber's
    # enrollments, and the cascade when one is deleted), `sequence` by enrollment_due
    # (active rows) and enrollment_ended (the others; deleting a sequence scans the table
    # once, a rare edit), and the step links have no index
    # (deleting a step scans the sequence's enrollments once, a rare edit) and no
    # database constraint (whose check would run twice per advanced row): the
    # scheduler treats a step id it does not know as a deleted step and plans again.
    sequence = models.ForeignKey(Sequence, on_delete=models.CASCADE, related_name="enrollments", db_index=False)
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.CASCADE, related_name="sequence_enrollments", db_index=False
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=ACTIVE)
    exit_reason = models.CharField(max_length=12, choices=EXIT_CHOICES, blank=True)
    source = models.CharField(max_length=10, blank=True, help_text="What brought them in: subscribe, tag, api, existing.")
    entry = models.PositiveIntegerField(default=1)
    position = models.PositiveIntegerField(default=0)
    last_step = models.ForeignKey(
        Step, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False, db_constraint=False
    )
    last_step_at = models.DateTimeField(help_text="When the last step went (or when they entered): delays count from here.")
    next_step = models.ForeignKey(
        Step, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", db_index=False, db_constraint=False
    )
    next_step_at = models.DateTimeField(null=True, blank=True)
    trigger_ref = models.BigIntegerField(default=0, help_text="The tag row that brought them in (re-entry on a new one).")
    entered_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-entered_at", "-id"]
        constraints = [
            # ON CONFLICT target of campaigns.scheduler.discover(): each subscriber enters once;
            # re-entry moves the same row to its next `entry`.
            models.UniqueConstraint(fields=["subscriber", "sequence"], name="enrollment_unique"),
        ]
        indexes = [
            # The scheduler's queue: campaigns.scheduler.claim() reads due enrollments of one
            # running sequence in next_step_at order; finished and exited rows stay out.
            models.Index(
                fields=["sequence", "next_step_at"], condition=Q(status="active"), name="enrollment_due",
            ),
            # Who has left a sequence (finished or exited): its figures (campaigns.sequence_stats),
            # re-entry and the finished rows a new last step continues (campaigns.sequences).
            # Active rows stay out: the scheduler advances them all the time, and each advance
            # writes a new entry into every index of the row (a pass over 100,000 due rows of
            # 1,000,000 enrollments: 46 µs of Postgres CPU a row with (sequence, status) over every
            # row, 40 µs with this one; medians of three).
            models.Index(fields=["sequence", "status"], condition=~Q(status="active"), name="enrollment_ended"),
        ]

    def __str__(self):
        return f"{self.subscriber} in {self.sequence} ({self.status})"


class Message(models.Model):
    """The ledger: one row per intended email; the unique constraint makes fan-out exactly-once."""

    QUEUED, SENDING, SENT, RETRY, FAILED, UNKNOWN, SKIPPED, CANCELLED = (
        "queued", "sending", "sent", "retry", "failed", "unknown", "skipped", "cancelled",
    )
    STATUS_CHOICES = [
        (QUEUED, "Queued"), (SENDING, "Sending"), (SENT, "Sent"), (RETRY, "Waiting to retry"),
        (FAILED, "Failed"), (UNKNOWN, "Unknown (worker stopped mid-send)"), (SKIPPED, "Skipped"),
        (CANCELLED, "Cancelled"),
    ]
    CLAIMABLE = (QUEUED, RETRY)
    FINAL = (SENT, FAILED, UNKNOWN, SKIPPED, CANCELLED)

    # Indexed by message_broadcast (partial: a step's rows, the scheduler's inserts, skip it).
    broadcast = models.ForeignKey(
        Broadcast, on_delete=models.CASCADE, null=True, blank=True, related_name="messages", db_index=False
    )
    # The step and the subscriber are checked by triggers instead of foreign-key constraints
    # (Postgres; migration 0013): a constraint checks each inserted row on its own (5,000-row
    # inserts of step messages at 1,000,000 subscribers: 30 µs a row of Postgres CPU with the
    # two constraints, 20 with the trigger, 16 with neither; medians of eight), while the
    # trigger checks a whole INSERT once, set-based, and takes the same FOR KEY
    # SHARE locks, so a step or subscriber cannot be deleted under an open insert. When one is
    # deleted, a trigger sets its messages' link to NULL (a step's unsent ones are cancelled):
    # the ORM's SET NULL runs before the DELETE and cannot see rows a concurrent insert commits.
    # A sequence step's mail: the step and which entry of the subscriber into the sequence
    # (re-entry and yearly rounds send a step again, once per entry).
    step = models.ForeignKey(
        Step, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_index=False,
        db_constraint=False,
    )  # indexed by message_step_status, which also serves the SET NULL when a step is deleted
    entry = models.PositiveIntegerField(default=0, db_default=0)
    # SET NULL (also in the database, see above): statistics outlive an erased subscriber.
    subscriber = models.ForeignKey(
        Subscriber, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_constraint=False
    )
    email = models.EmailField(max_length=254, help_text="The address at fan-out time.")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    leased_by = models.CharField(max_length=80, blank=True)
    # No index of its own: every send changes it, so each index on it is written twice per message
    # (claim and outcome). The backend pages read message_backend_sent / message_backend_trouble;
    # deleting a backend (rare; deactivating is the usual way) scans the ledger once.
    backend = models.ForeignKey(
        Backend, on_delete=models.SET_NULL, null=True, blank=True, related_name="messages", db_index=False
    )
    message_id = models.CharField(max_length=255, blank=True, help_text="Our Message-ID header.")
    provider_id = models.CharField(max_length=255, blank=True, help_text="The ESP's id for the message.")
    last_response = models.TextField(blank=True, help_text="The last SMTP or API answer, or why it was skipped.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # ON CONFLICT target of the broadcast fan-out (campaigns.ledger.fan_out).
            # Sequence steps get their own partial unique index when they arrive.
            models.UniqueConstraint(
                fields=["subscriber", "broadcast"], condition=Q(broadcast__isnull=False),
                name="message_once_per_broadcast",
            ),
            # ON CONFLICT target of the sequence scheduler (campaigns.scheduler.write_messages).
            models.UniqueConstraint(
                fields=["subscriber", "step", "entry"], condition=Q(step__isnull=False),
                name="message_once_per_step_entry",
            ),
        ]
        indexes = [
            # The queue: campaigns.ledger.claim() reads due rows of one broadcast in
            # next_attempt_at order. Final rows (the vast majority) stay out of it.
            models.Index(
                fields=["broadcast", "next_attempt_at"], condition=Q(status__in=["queued", "retry"]),
                name="message_claimable",
            ),
            # The queue of sequence mail: campaigns.step_sending.claim() reads due rows of one step.
            models.Index(
                fields=["step", "next_attempt_at"], condition=Q(status__in=["queued", "retry"], step__isnull=False),
                name="message_step_claimable",
            ),
            # Per-step figures (campaigns.sequence_stats) count a step's rows by status.
            models.Index(fields=["step", "status"], condition=Q(step__isnull=False), name="message_step_status"),
            # A broadcast's rows (its report, its counts, CASCADE when it is deleted).
            models.Index(fields=["broadcast", "status"], condition=Q(broadcast__isnull=False),
                         name="message_broadcast"),
            # campaigns.ledger.reap() looks for expired leases.
            models.Index(fields=["lease_until"], condition=Q(status="sending"), name="message_leased"),
            # campaigns.webhooks finds the row of an ESP event that lacks our metadata by the ESP's id.
            models.Index(fields=["provider_id"], condition=~Q(provider_id=""), name="message_provider_id"),
            # A backend's sent messages in a time range: the quota figures
            # (campaigns.dashboard_services.sends_in_window) and the monthly cost per backend
            # (campaigns.costs.monthly) count them with an index-only scan.
            models.Index(fields=["backend", "sent_at"], condition=Q(status="sent"), name="message_backend_sent"),
            # A backend's latest retries and failures, newest first (campaigns.dashboard_services.recent_errors
            # on the backend page); the final rows of every sent message stay out of it.
            models.Index(
                fields=["backend", "updated_at"], condition=Q(status__in=["retry", "failed"]),
                name="message_backend_trouble",
            ),
        ]

    def __str__(self):
        return f"{self.email} ({self.status})"


class Link(models.Model):
    """A tracked URL, stored once; click redirects resolve only these, never a URL from the request."""

    url = models.TextField()
    url_hash = models.CharField(max_length=64, unique=True, help_text="SHA-256 of the URL.")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.url[:100]


class Hook(models.Model):
    """A REST hook subscription (resthooks.org): each `event` is POSTed to `target`, signed with `secret`
    (campaigns/hooks.py)."""

    event = models.CharField(max_length=40)
    target = models.URLField(max_length=2000)
    secret = EncryptedTextField()
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="hooks",
                              help_text="Who subscribed it; told on the dashboard when it is disabled.")
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(default=0, help_text="Deliveries in a row that failed for good.")
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_failure_at = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["event", "target"], name="hook_event_target_unique")]
        indexes = [
            # campaigns.hooks.emit_many() and wanted() look up the active hooks of an event.
            models.Index(fields=["event"], condition=Q(is_active=True), name="hook_active_event"),
        ]

    def __str__(self):
        return f"{self.event} → {self.target}"


class HookDelivery(models.Model):
    """One event on its way to one hook: the outbox row, its attempts and their log."""

    PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
    STATUS_CHOICES = [(PENDING, "Waiting"), (DELIVERED, "Delivered"), (FAILED, "Failed")]

    uid = models.UUIDField(unique=True, help_text="The delivery id receivers use to ignore repeats.")
    hook = models.ForeignKey(Hook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    body = models.JSONField(help_text="The JSON document POSTed: id, event, created_at, data.")
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="No retry after this; the delivery fails for good.")
    last_status = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The target's last HTTP status.")
    last_error = models.TextField(blank=True)
    attempt_log = models.JSONField(default=list, blank=True, help_text="[{at, status, error, response, ms}]")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "hook deliveries"
        indexes = [
            # The queue: campaigns.hooks.claim() reads due pending rows in next_attempt_at order.
            models.Index(fields=["next_attempt_at"], condition=Q(status="pending"), name="hookdelivery_due"),
            # The dashboard's log of one hook, newest first.
            models.Index(fields=["hook", "-created_at"], name="hookdelivery_hook_recent"),
        ]

    def __str__(self):
        return f"{self.event} to hook {self.hook_id} ({self.status})"


# --- Tracking and the feedback loop (campaigns/events.py, stats.py, policy.py) -----------------


class Event(models.Model):
    """Something that happened to a sent message: an open, a click, an unsubscribe, a
    delivery, a bounce, a deferral or a complaint.

    Written in batches by campaigns.events (never one ORM save per hit). `uid` makes
    every write idempotent: a hit drained twice after a crash, or a webhook the ESP
    sends again, is stored and counted once. The scope (broadcast or sequence step)
    is kept on the row so figures survive the message's deletion and so an
    aggregate-only list's opens and clicks can be counted without their message.
    """

    DELIVERED, OPEN, CLICK, UNSUBSCRIBE = "delivered", "open", "click", "unsubscribe"
    BOUNCE, SOFT_BOUNCE, DEFERRED, COMPLAINT = "bounce", "soft_bounce", "deferred", "complaint"
    KIND_CHOICES = [
        (DELIVERED, "Delivered"), (OPEN, "Open"), (CLICK, "Click"), (UNSUBSCRIBE, "Unsubscribe"),
        (BOUNCE, "Hard bounce"), (SOFT_BOUNCE, "Soft bounce"), (DEFERRED, "Deferred"), (COMPLAINT, "Complaint"),
    ]
    BROADCAST, STEP = "broadcast", "step"
    SCOPE_CHOICES = [(BROADCAST, "Broadcast"), (STEP, "Sequence step")]

    uid = models.UUIDField(unique=True, editable=False)
    kind = models.CharField(max_length=12, choices=KIND_CHOICES)
    # SET NULL: figures outlive a deleted message. NULL as well for the opens and clicks
    # of an aggregate-only list (lists.MailingList.privacy_mode).
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="events")
    scope = models.CharField(max_length=10, choices=SCOPE_CHOICES, blank=True)
    scope_id = models.BigIntegerField(null=True, blank=True)
    link = models.ForeignKey(Link, on_delete=models.SET_NULL, null=True, blank=True, db_index=False, related_name="+")
    is_machine = models.BooleanField(
        default=False, help_text="A link scanner or prefetcher (HEAD request, scanner user agent, or seconds "
        "after sending): kept out of the human counts."
    )
    source = models.CharField(max_length=30, blank=True, help_text="pixel, redirect, smtp, mailbox, webhook:<ESP>…")
    detail = models.TextField(blank=True, help_text="The bounce or complaint text.")
    created_at = models.DateTimeField(help_text="When it happened (not when it was stored).")

    class Meta:
        ordering = ["-id"]
        indexes = [
            # campaigns.stats.rebuild() recounts one broadcast's or step's rollups from here.
            models.Index(fields=["scope", "scope_id", "created_at"], name="event_scope_time"),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} of message {self.message_id or '—'}"


class StatsBucket(models.Model):
    """The rollup behind every figure: one row per broadcast (or step) and hour, moved by
    campaigns.events in the same transaction as the events it counts, so the dashboard
    sums a few rows instead of counting millions of events."""

    scope = models.CharField(max_length=10, choices=Event.SCOPE_CHOICES)
    scope_id = models.BigIntegerField()
    hour = models.DateTimeField()
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    bounced = models.PositiveIntegerField(default=0)
    soft_bounced = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    complained = models.PositiveIntegerField(default=0)
    unsubscribed = models.PositiveIntegerField(default=0)
    opens = models.PositiveIntegerField(default=0)
    unique_opens = models.PositiveIntegerField(default=0)
    clicks = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0)
    machine_opens = models.PositiveIntegerField(default=0)
    machine_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["scope", "scope_id", "hour"]
        constraints = [
            # ON CONFLICT target of the rollup upsert (campaigns.events).
            models.UniqueConstraint(fields=["scope", "scope_id", "hour"], name="statsbucket_once_per_hour"),
        ]
        verbose_name = "statistics bucket"

    def __str__(self):
        return f"{self.scope} {self.scope_id} at {self.hour:%Y-%m-%d %H:00}"


class LinkStats(models.Model):
    """Clicks per link of one broadcast (or step), kept like StatsBucket."""

    scope = models.CharField(max_length=10, choices=Event.SCOPE_CHOICES)
    scope_id = models.BigIntegerField()
    link = models.ForeignKey(Link, on_delete=models.CASCADE, related_name="stats")
    clicks = models.PositiveIntegerField(default=0)
    unique_clicks = models.PositiveIntegerField(default=0)
    machine_clicks = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["scope", "scope_id", "-clicks"]
        constraints = [
            models.UniqueConstraint(fields=["scope", "scope_id", "link"], name="linkstats_once_per_link"),
        ]
        verbose_name = "link statistics"
        verbose_name_plural = "link statistics"

    def __str__(self):
        return f"{self.link} in {self.scope} {self.scope_id}"


class BouncePolicy(models.Model):
    """What bounces and complaints do to an address (campaigns.policy); one row, edited in
    the admin and on the settings page."""

    hard_bounce_suppresses = models.BooleanField(
        default=True, help_text="Suppress an address at its first hard bounce (the mailbox does not exist)."
    )
    soft_bounce_limit = models.PositiveSmallIntegerField(
        default=3, help_text="Suppress an address after this many soft bounces (mailbox full, blocked…); 0: never."
    )
    soft_bounce_days = models.PositiveSmallIntegerField(default=15, help_text="…within this many days.")
    complaint_unsubscribes = models.BooleanField(
        default=True, help_text="A spam complaint unsubscribes the address from every list."
    )
    complaint_suppresses = models.BooleanField(
        default=True, help_text="A spam complaint puts the address on the suppression list."
    )
    # The automatic brakes (campaigns/brakes.py).
    brake_messages = models.PositiveIntegerField(
        default=1000, help_text="The brakes watch each broadcast's first this many messages."
    )
    brake_min_messages = models.PositiveIntegerField(
        default=100, help_text="…and judge once this many have gone out (and at least 3 bounces or complaints came "
        "back), so one bounce among the first three messages pauses nothing.",
    )
    brake_bounce_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("5.00"), validators=[MaxValueValidator(100)],
        help_text="Pause a broadcast when more than this share of its watched messages hard-bounce; 0: never.",
    )
    brake_complaint_percent = models.DecimalField(
        max_digits=5, decimal_places=2, default=Decimal("0.30"), validators=[MaxValueValidator(100)],
        help_text="Pause a broadcast when more than this share of its watched messages are reported as spam; "
        "0: never. Gmail and Yahoo start refusing mail at 0.3 %.",
    )
    policy_pause_after = models.PositiveSmallIntegerField(
        default=5, help_text="Pause a broadcast (or sequence) after this many 5.7.x policy refusals in a row; 0: never.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "bounce policy"
        verbose_name_plural = "bounce policy"

    def __str__(self):
        return "Bounce policy"

    def clean(self):
        if self.soft_bounce_limit and not self.soft_bounce_days:
            raise ValidationError({"soft_bounce_days": "Give the number of days the soft bounces are counted over."})
        if self.brake_min_messages > self.brake_messages:
            raise ValidationError({"brake_min_messages": "The brakes cannot wait for more messages than they watch: "
                                   "make this at most the number of watched messages."})


class BrakeState(models.Model):
    """The automatic brakes' counters for one broadcast (campaigns/brakes.py): the hard bounces and
    complaints of its watched (first) messages, moved with F() in the transaction that records the
    event, so the check reads one row instead of counting events."""

    broadcast = models.OneToOneField(Broadcast, on_delete=models.CASCADE, primary_key=True, related_name="brakes")
    bounces = models.PositiveIntegerField(default=0)
    complaints = models.PositiveIntegerField(default=0)
    watched = models.PositiveIntegerField(
        default=0, help_text="Messages that had gone out when the watch closed (0: still watching)."
    )
    closed_at = models.DateTimeField(
        null=True, blank=True, help_text="When the watched messages had gone out; feedback on later ones is not counted."
    )
    bounce_tripped_at = models.DateTimeField(null=True, blank=True, help_text="When the bounce brake paused it.")
    complaint_tripped_at = models.DateTimeField(null=True, blank=True, help_text="When the complaint brake paused it.")

    class Meta:
        verbose_name = "broadcast brake state"

    def __str__(self):
        return f"Brakes of broadcast {self.broadcast_id}"


class SunsetPolicy(models.Model):
    """Unsubscribing the subscribers who stopped reading (campaigns.sunset); one row, edited on
    the settings page and in the admin."""

    OFF, SUGGEST, APPLY = "off", "suggest", "apply"
    MODE_CHOICES = [
        (OFF, "Off"),
        (SUGGEST, "Suggest: show how many, and unsubscribe them when you press the button"),
        (APPLY, "Apply: unsubscribe them automatically once a day"),
    ]

    mode = models.CharField(max_length=8, choices=MODE_CHOICES, default=SUGGEST)
    months = models.PositiveSmallIntegerField(
        default=6, validators=[MinValueValidator(1), MaxValueValidator(36)],
        help_text="Subscribers sent mail in this many months who opened and clicked none of it.",
    )
    # Written by campaigns.sunset: the last count, which pages show instead of counting events.
    inactive_subscribers = models.PositiveIntegerField(null=True, blank=True)
    inactive_subscriptions = models.PositiveIntegerField(null=True, blank=True)
    counted_months = models.PositiveSmallIntegerField(null=True, blank=True, help_text="The months of the last count.")
    counted_at = models.DateTimeField(null=True, blank=True)
    # The daily job (campaigns.tasks.sunset) claims its run with a conditional UPDATE of this.
    daily_run_at = models.DateTimeField(null=True, blank=True)
    last_applied_at = models.DateTimeField(null=True, blank=True)
    last_applied_count = models.PositiveIntegerField(default=0, help_text="Subscriptions the last run unsubscribed.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "sunset policy"
        verbose_name_plural = "sunset policy"

    def __str__(self):
        return f"Sunset policy ({self.get_mode_display().split(':')[0]}, {self.months} months)"
