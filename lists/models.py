"""
The audience: lists, subscribers, their subscriptions (with consent), tags,
segments, suppressions and import jobs. This app knows nothing of campaigns.
"""

import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

# The accent colour ends up in a stylesheet, so only a plain #rrggbb value is accepted.
hex_color = RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use a colour such as #2456d6 (# and six hex digits).")


class MailingList(models.Model):
    SINGLE, DOUBLE = "single", "double"
    OPT_IN_CHOICES = [(SINGLE, "Single opt-in"), (DOUBLE, "Double opt-in (confirmation mail)")]

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, help_text="Shown on the public signup page.")
    opt_in = models.CharField(max_length=10, choices=OPT_IN_CHOICES, default=DOUBLE)
    from_name = models.CharField(max_length=200, blank=True)
    from_email = models.EmailField(blank=True)
    reply_to = models.EmailField(blank=True)
    postal_address = models.TextField(blank=True, help_text="The sender's postal address, shown in every footer.")
    confirmation_subject = models.CharField(max_length=200, default="Please confirm your subscription")
    confirmation_body = models.TextField(
        default="Please confirm that you want to receive mail from {{ list.name }}: {{ confirm_url }}\n\n"
        "If you did not ask for this, ignore this message and nothing will happen."
    )
    thank_you_message = models.TextField(
        default="Thanks! Check your inbox for a confirmation link to finish signing up."
    )
    thank_you_url = models.URLField(blank=True, help_text="Send people here after signup instead.")
    confirmed_message = models.TextField(default="You're subscribed. Welcome aboard!")
    consent_text = models.TextField(
        default="I agree to receive email from this list. I can unsubscribe at any time with the link in every mail.",
        blank=True,
        help_text="Shown next to the signup button and stored with each signup as the consent record.",
    )
    # Custom form fields mapped to subscriber attributes:
    # [{"name": "company", "label": "Company", "required": false}, …]
    form_fields = models.JSONField(default=list, blank=True)
    accent_color = models.CharField(max_length=7, default="#2456d6", validators=[hex_color])
    time_zone = models.CharField(max_length=64, blank=True, help_text="Default for subscribers without one.")
    # Privacy switches, honoured by the composer (campaigns.composing) and the event
    # recorder (campaigns.events). A broadcast to several lists tracks only what every
    # one of them allows.
    track_opens = models.BooleanField(default=True, help_text="Put an open pixel in messages to this list.")
    track_clicks = models.BooleanField(default=True, help_text="Send links through the click counter.")
    privacy_mode = models.BooleanField(
        default=False, verbose_name="aggregate-only tracking",
        help_text="Count opens and clicks without recording which subscriber opened or clicked.",
    )
    reject_disposable = models.BooleanField(
        default=True, db_default=True, verbose_name="refuse throwaway addresses",
        help_text="The signup form asks people whose address is at a throwaway mail service (such as "
        "mailinator.com) for their regular address instead.",
    )
    is_archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    @property
    def is_double_opt_in(self):
        return self.opt_in == self.DOUBLE


class Tag(models.Model):
    name = models.CharField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class Subscriber(models.Model):
    ACTIVE, BLOCKLISTED = "active", "blocklisted"
    STATUS_CHOICES = [(ACTIVE, "Active"), (BLOCKLISTED, "Blocklisted")]

    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    attributes = models.JSONField(default=dict, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=12, choices=STATUS_CHOICES, default=ACTIVE)
    tags = models.ManyToManyField(Tag, blank=True, related_name="subscribers")
    # List hygiene (lists.hygiene): what the address is, set at signup and import. A database
    # default as well, so raw INSERTs and COPYs that do not name these columns keep working.
    is_role_address = models.BooleanField(
        default=False, db_default=False, help_text="A shared or system mailbox such as info@ or postmaster@."
    )
    is_disposable_address = models.BooleanField(
        default=False, db_default=False, help_text="At a throwaway mail service such as mailinator.com."
    )
    has_no_mx = models.BooleanField(
        default=False, db_default=False, help_text="Its domain has no mail server (no MX nor A record) at the "
        "last MX check of an import.",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(Lower("email"), name="subscriber_email_ci_unique")]
        indexes = [
            # The subscriber index's "flagged" filter (lists.search), newest first: a few per cent of
            # the rows each, so a small partial index instead of a walk over every subscriber.
            models.Index(fields=["created_at", "id"], condition=Q(is_role_address=True), name="subscriber_role"),
            models.Index(
                fields=["created_at", "id"], condition=Q(is_disposable_address=True), name="subscriber_disposable"
            ),
            models.Index(fields=["created_at", "id"], condition=Q(has_no_mx=True), name="subscriber_no_mx"),
        ]

    def __str__(self):
        return self.email


class Subscription(models.Model):
    UNCONFIRMED, CONFIRMED, UNSUBSCRIBED = "unconfirmed", "confirmed", "unsubscribed"
    STATUS_CHOICES = [(UNCONFIRMED, "Unconfirmed"), (CONFIRMED, "Confirmed"), (UNSUBSCRIBED, "Unsubscribed")]
    FORM, IMPORT, API, ADMIN = "form", "import", "api", "admin"
    SOURCE_CHOICES = [(FORM, "Signup form"), (IMPORT, "Import"), (API, "API"), (ADMIN, "Dashboard/admin")]

    # No single-column indexes of their own: subscription_unique (subscriber, mailing_list) and
    # subscription_list_status (mailing_list, status) lead with these columns and serve every look-up
    # and cascade by them; two more indexes would only be written on every insert (a bulk import).
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="subscriptions", db_index=False)
    mailing_list = models.ForeignKey(MailingList, on_delete=models.CASCADE, related_name="subscriptions",
                                     db_index=False)
    status = models.CharField(max_length=12, choices=STATUS_CHOICES, default=UNCONFIRMED)
    source = models.CharField(max_length=10, choices=SOURCE_CHOICES, default=FORM)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Consent record: when, from where, on which form, agreeing to which text.
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_ip = models.GenericIPAddressField(null=True, blank=True)
    consent_user_agent = models.CharField(max_length=500, blank=True)
    consent_form = models.CharField(max_length=200, blank=True, help_text="The page or form the consent came from.")
    consent_text = models.TextField(blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    confirm_ip = models.GenericIPAddressField(null=True, blank=True)
    unsubscribed_at = models.DateTimeField(null=True, blank=True)
    unsubscribe_reason = models.CharField(max_length=200, blank=True)
    unsubscribe_ip = models.GenericIPAddressField(null=True, blank=True)
    # Set by the confirmation task when it claims a send, so a task delivered twice mails once.
    confirmation_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "mailing_list"], name="subscription_unique"),
        ]
        indexes = [
            # Fan-out of broadcasts and sequence enrollment read the confirmed members of a list.
            models.Index(fields=["mailing_list", "status"], name="subscription_list_status"),
            # "Signups today / this week" on the overview (lists.overview).
            models.Index(fields=["created_at"], name="subscription_created"),
            # "Unsubscribes today / this week" on the overview; most rows never unsubscribe.
            models.Index(
                fields=["unsubscribed_at"], name="subscription_unsubscribed", condition=Q(unsubscribed_at__isnull=False)
            ),
        ]

    def __str__(self):
        return f"{self.subscriber} on {self.mailing_list} ({self.status})"

    @property
    def is_confirmed(self):
        return self.status == self.CONFIRMED


class Suppression(models.Model):
    """An address never mailed again, whatever its subscriptions say; checked at send time."""

    HARD_BOUNCE, SOFT_BOUNCE, COMPLAINT, MANUAL, IMPORT, UNSUBSCRIBE = (
        "hard_bounce", "soft_bounce", "complaint", "manual", "import", "unsubscribe",
    )
    REASON_CHOICES = [
        (HARD_BOUNCE, "Hard bounce"),
        (SOFT_BOUNCE, "Repeated soft bounces"),
        (COMPLAINT, "Spam complaint"),
        (MANUAL, "Added by hand"),
        (IMPORT, "Imported suppression list"),
        (UNSUBSCRIBE, "Unsubscribed from everything"),
    ]

    # Stored lower-cased so the send-time check is an index lookup.
    email = models.EmailField(max_length=254, unique=True)
    reason = models.CharField(max_length=20, choices=REASON_CHOICES, default=MANUAL)
    detail = models.TextField(blank=True, help_text="The bounce message, complaint source or note.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.email} ({self.get_reason_display()})"

    def save(self, *args, **kwargs):
        self.email = self.email.strip().lower()
        super().save(*args, **kwargs)


class ErasedAddress(models.Model):
    """An address erased at its owner's request (GDPR), kept only as a keyed hash.

    The hash lets an import or API call recognise the address and refuse to add it
    back without fresh consent, while the address itself is gone: it cannot be
    recovered from the digest without SECRET_KEY and a guess (see lists.services).
    """

    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "erased address"

    def __str__(self):
        return f"Erased address {self.digest[:12]}…"


class Segment(models.Model):
    """A saved filter over subscribers, usable as a send target.

    `conditions` is a list of {"field", "op", "value"} objects, combined with
    `match` (all / any); see lists.segments for the fields and operators.
    """

    ALL, ANY = "all", "any"
    name = models.CharField(max_length=200, unique=True)
    match = models.CharField(max_length=3, choices=[(ALL, "All conditions"), (ANY, "Any condition")], default=ALL)
    conditions = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name


class ImportJob(models.Model):
    ADD, UPSERT, UNSUBSCRIBE, SUPPRESS = "add", "upsert", "unsubscribe", "suppress"
    MODE_CHOICES = [
        (ADD, "Add new subscribers only"),
        (UPSERT, "Add new and update existing"),
        (UNSUBSCRIBE, "Unsubscribe these addresses"),
        (SUPPRESS, "Add these addresses to the suppression list"),
    ]
    PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
    STATUS_CHOICES = [(PENDING, "Waiting"), (RUNNING, "Importing"), (DONE, "Finished"), (FAILED, "Failed")]

    mailing_list = models.ForeignKey(MailingList, on_delete=models.CASCADE, null=True, blank=True, related_name="imports")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    file = models.CharField(max_length=500, help_text="Path of the uploaded CSV under MEDIA_ROOT.")
    original_name = models.CharField(max_length=255, blank=True)
    mode = models.CharField(max_length=12, choices=MODE_CHOICES, default=ADD)
    # True: the marketer vouches for consent and new subscriptions are confirmed at once.
    # False: they start unconfirmed and get a confirmation mail.
    confirmed = models.BooleanField(default=False)
    # {"csv column": "email" | "name" | "time_zone" | "attributes.<key>" | ""(ignore)}
    mapping = models.JSONField(default=dict, blank=True)
    tags = models.JSONField(default=list, blank=True)
    # List hygiene (lists.hygiene, lists.hygiene_import)
    check_mx = models.BooleanField(
        default=False, db_default=False, verbose_name="check mail servers",
        help_text="Look up each domain's mail servers (MX, or an A record); addresses at domains without "
        "any are flagged.",
    )
    skip_flagged = models.BooleanField(
        default=False, db_default=False, verbose_name="skip flagged addresses",
        help_text="Skip role addresses, throwaway domains and (with the MX check) domains without mail "
        "servers, instead of importing them with a flag.",
    )
    status = models.CharField(max_length=10, choices=STATUS_CHOICES, default=PENDING)
    total_bytes = models.BigIntegerField(default=0)
    processed_bytes = models.BigIntegerField(default=0)
    rows = models.IntegerField(default=0)
    created = models.IntegerField(default=0)
    updated = models.IntegerField(default=0)
    skipped = models.IntegerField(default=0)
    invalid = models.IntegerField(default=0)
    flagged = models.IntegerField(
        default=0, db_default=0, help_text="Imported addresses that carry a hygiene flag (role, throwaway, no MX)."
    )
    errors = models.JSONField(default=list, blank=True, help_text="The first invalid rows: [{line, reason}].")
    error_report = models.CharField(max_length=500, blank=True, help_text="Full per-row error CSV under MEDIA_ROOT.")
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Import {self.pk} ({self.get_status_display()})"

    @property
    def percent(self):
        if self.status == self.DONE:
            return 100
        return int(100 * self.processed_bytes / self.total_bytes) if self.total_bytes else 0

    @property
    def is_finished(self):
        return self.status in (self.DONE, self.FAILED)
