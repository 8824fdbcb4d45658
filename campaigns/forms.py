"""
Dashboard forms for backends, sender identities, layouts, templates and broadcasts.

Secrets (passwords, API keys, DKIM keys) are write-only: their inputs never
render a value, an empty input keeps what is saved, and a checkbox removes it.
Template sources are checked by the models' clean() (campaigns.rendering.validate),
so a template that fails to parse is refused with its line and reason.
"""

import re
from datetime import timedelta

from django import forms
from django.utils import timezone

from lists.models import MailingList, Segment

from . import dkim, warmup
from .models import Backend, Broadcast, Layout, SenderIdentity, Template

_LINE_BREAK = re.compile(r"[\r\n\x00]")
SAVED_SECRET = "•••• saved — leave empty to keep"


def one_line(value, label="This"):
    """Refuse CR, LF and NUL: these values end up in mail headers or SMTP commands."""
    if value and _LINE_BREAK.search(value):
        raise forms.ValidationError(f"{label} cannot contain line breaks.")
    return value


def field_groups(form, groups):
    """[(legend, [bound fields])] in display order, skipping empty groups."""
    found = []
    for legend, names in groups:
        fields = [form[name] for name in names if name in form.fields]
        if fields:
            found.append((legend, fields))
    return found


class OneLineMixin:
    """clean_<field> for every name in `one_line_fields`."""

    one_line_fields = ()

    def _clean_fields(self):
        super()._clean_fields()
        for name in self.one_line_fields:
            if name in self.cleaned_data:
                try:
                    one_line(self.cleaned_data[name])
                except forms.ValidationError as exc:
                    self.add_error(name, exc)


# --- Backends ---------------------------------------------------------------------------


class WriteOnlyTextarea(forms.Textarea):
    """A textarea that never shows a value, not even the one just posted."""

    def format_value(self, value):
        return ""


SECRETS = ("password", "api_key", "api_secret", "dkim_private_key")
COMMON_FIELDS = (
    "name", "is_active", "priority", "rate_per_second", "window_limit", "window_seconds",
    "price_per_thousand", "retry_schedule", "give_up_hours", "warmup_schedule", "warmup_started_on",
)
SMTP_FIELDS = (
    "host", "port", "security", "username", "password",
    "dkim_domain", "dkim_selector", "dkim_private_key", "dkim_generate", "domain_throttle",
)
# The fields each kind needs; esp_options keys are form fields of the same name.
KIND_FIELDS = {
    Backend.SMTP: SMTP_FIELDS,
    Backend.AMAZON_SES: ("api_key", "api_secret", "region", "configuration_set_name"),
    Backend.MANDRILL: ("api_key",),
    Backend.SENDGRID: ("api_key",),
    Backend.POSTMARK: ("api_key", "message_stream"),
    Backend.MAILGUN: ("api_key", "sender_domain", "api_url"),
    Backend.BREVO: ("api_key",),
    Backend.OUTBOX: (),
}
ESP_OPTION_FIELDS = ("region", "configuration_set_name", "message_stream", "sender_domain", "api_url")
# What each ESP calls its credentials, so the form speaks the ESP's language.
API_KEY_LABELS = {Backend.AMAZON_SES: "Access key ID", Backend.POSTMARK: "Server token"}
API_KEY_HINTS = {
    Backend.AMAZON_SES: "Leave both empty to use the credentials of the machine (IAM role, environment).",
    Backend.MANDRILL: "Settings → SMTP & API Info → API keys in Mailchimp Transactional.",
    Backend.SENDGRID: "Settings → API Keys; the key needs the Mail Send permission.",
    Backend.POSTMARK: "The Server API token of the Postmark server you send through.",
    Backend.MAILGUN: "Your Mailgun private API key (Sending API key).",
    Backend.BREVO: "SMTP & API → API keys (v3).",
}
FIELD_GROUPS = (
    ("Backend", ("name", "is_active", "priority")),
    ("Connection and credentials", (
        "host", "port", "security", "username", "password", "clear_password", "api_key", "clear_api_key",
        "api_secret", "clear_api_secret", "region", "configuration_set_name", "message_stream", "sender_domain",
        "api_url",
    )),
    ("DKIM signing", ("dkim_domain", "dkim_selector", "dkim_private_key", "clear_dkim_private_key", "dkim_generate")),
    ("Limits, retries and price", (
        "rate_per_second", "window_limit", "window_seconds", "domain_throttle", "price_per_thousand",
        "retry_schedule", "give_up_hours",
    )),
    ("Warm-up", ("warmup_schedule", "warmup_started_on")),
)
ESP_KEY_REQUIRED = (Backend.MANDRILL, Backend.SENDGRID, Backend.POSTMARK, Backend.MAILGUN, Backend.BREVO)


class BackendForm(OneLineMixin, forms.ModelForm):
    """One form for every kind; __init__ keeps the fields the kind needs."""

    one_line_fields = ("name", "host", "username", "dkim_domain", "dkim_selector") + ESP_OPTION_FIELDS

    give_up_hours = forms.IntegerField(
        label="Give up after (hours)", min_value=1, max_value=24 * 30, initial=48,
        help_text="A message still failing this long after its first attempt is recorded as failed.",
    )
    region = forms.CharField(label="AWS region", required=False, initial="us-east-1", max_length=40)
    configuration_set_name = forms.CharField(label="Configuration set", required=False, max_length=100,
                                             help_text="Optional: the SES configuration set for event publishing.")
    message_stream = forms.CharField(label="Message stream", required=False, max_length=100,
                                     help_text="Postmark broadcast stream, e.g. broadcast. Empty: outbound.")
    sender_domain = forms.CharField(label="Sending domain", required=False, max_length=255,
                                    help_text="Empty: the domain of each From address.")
    api_url = forms.URLField(label="API base URL", required=False, max_length=255, assume_scheme="https",
                             help_text="Only for another region, e.g. https://api.eu.mailgun.net/v3 for Mailgun EU.")
    dkim_generate = forms.ChoiceField(
        label="Generate a new DKIM key", required=False,
        choices=[("", "No, keep the key as it is"), ("ed25519", "Yes, Ed25519"), ("rsa", "Yes, RSA 2048")],
        help_text="Creates a key for the domain and selector above; publish the DNS record shown afterwards.",
    )

    class Meta:
        model = Backend
        fields = (
            "name", "is_active", "priority", "host", "port", "security", "username", "password",
            "api_key", "api_secret", "dkim_domain", "dkim_selector", "dkim_private_key",
            "rate_per_second", "window_limit", "window_seconds", "price_per_thousand", "retry_schedule",
            "warmup_schedule", "warmup_started_on", "domain_throttle",
        )
        labels = {
            "is_active": "Enabled", "host": "Server host name", "username": "User name",
            "api_key": "API key", "api_secret": "Secret access key", "dkim_domain": "DKIM domain",
            "dkim_selector": "DKIM selector", "dkim_private_key": "DKIM private key (PEM)",
            "rate_per_second": "Messages per second", "window_limit": "Quota per window",
            "window_seconds": "Window length (seconds)", "price_per_thousand": "Price per 1,000 messages",
            "warmup_schedule": "Daily caps", "warmup_started_on": "Warm-up starts on",
            "domain_throttle": "Per mailbox provider",
        }
        widgets = {
            "password": forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            "api_key": forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            "api_secret": forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
            "dkim_private_key": WriteOnlyTextarea(attrs={"rows": 4, "autocomplete": "off"}),
            "warmup_started_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        }

    def __init__(self, *args, kind, **kwargs):
        super().__init__(*args, **kwargs)
        self.kind = kind
        self.instance.kind = kind
        wanted = set(COMMON_FIELDS) | set(KIND_FIELDS[kind])
        for name in list(self.fields):
            if name not in wanted and not name.startswith("clear_"):
                del self.fields[name]
        self._label_credentials()
        self._mark_saved_secrets()
        if self.instance.pk:
            self.fields["give_up_hours"].initial = int(self.instance.give_up_after.total_seconds() // 3600) or 1
            for name in ESP_OPTION_FIELDS:
                if name in self.fields and name in (self.instance.esp_options or {}):
                    self.fields[name].initial = self.instance.esp_options[name]

    def _label_credentials(self):
        if "api_key" in self.fields:
            self.fields["api_key"].label = API_KEY_LABELS.get(self.kind, "API key")
            self.fields["api_key"].help_text = API_KEY_HINTS.get(self.kind, "")

    def _mark_saved_secrets(self):
        for name in SECRETS:
            if name not in self.fields:
                continue
            field = self.fields[name]
            field.required = False
            if getattr(self.instance, name, ""):
                field.widget.attrs["placeholder"] = SAVED_SECRET
                field.help_text = "A value is saved. Leave this empty to keep it."
                self.fields[f"clear_{name}"] = forms.BooleanField(
                    required=False, label=f"Remove the saved {field.label.lower()}"
                )

    def groups(self):
        return field_groups(self, FIELD_GROUPS)

    @property
    def saved_secrets(self):
        return [name for name in SECRETS if name in self.fields and getattr(self.instance, name, "")]

    def clean(self):
        data = super().clean()
        for name in SECRETS:
            if name not in self.fields:
                continue
            if data.get(f"clear_{name}"):
                data[name] = ""
            elif not data.get(name):
                data[name] = getattr(self.instance, name, "")
        if self.kind in ESP_KEY_REQUIRED and not data.get("api_key"):
            self.add_error("api_key", f"Enter the {self.fields['api_key'].label.lower()} from your ESP account.")
        if self.kind == Backend.AMAZON_SES and bool(data.get("api_key")) != bool(data.get("api_secret")):
            self.add_error("api_secret", "Give both the access key ID and the secret access key, or neither.")
        if self.kind == Backend.SMTP:
            self._clean_dkim(data)
        if data.get("warmup_schedule") and not data.get("warmup_started_on"):
            data["warmup_started_on"] = warmup.local_date()  # day 1 is today
        return data

    def _clean_dkim(self, data):
        if data.get("dkim_generate"):
            if not (data.get("dkim_domain") and data.get("dkim_selector")):
                self.add_error("dkim_generate", "Enter the DKIM domain and selector first.")
                return
            data["dkim_private_key"], self.dkim_dns_value = dkim.generate_key(data["dkim_generate"])
        if data.get("dkim_private_key") and data.get("dkim_domain") and data.get("dkim_selector"):
            try:
                dkim.Signer(data["dkim_domain"], data["dkim_selector"], data["dkim_private_key"])
            except ValueError as exc:
                self.add_error("dkim_private_key", str(exc))
        elif data.get("dkim_private_key") and not data.get("dkim_domain"):
            self.add_error("dkim_domain", "Enter the domain the DKIM key signs for, or remove the key.")

    def save(self, commit=True):
        backend = super().save(commit=False)
        backend.give_up_after = timedelta(hours=self.cleaned_data["give_up_hours"])
        options = dict(backend.esp_options or {})
        for name in ESP_OPTION_FIELDS:
            if name in self.fields:
                value = self.cleaned_data.get(name, "")
                if value:
                    options[name] = value
                else:
                    options.pop(name, None)
        backend.esp_options = options
        if commit:
            backend.save()
        return backend


# --- Sender identities -------------------------------------------------------------------


class SenderIdentityForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name", "from_name")

    class Meta:
        model = SenderIdentity
        fields = ("name", "from_name", "from_email", "reply_to", "postal_address")
        labels = {"name": "Name (for you)", "from_name": "From name", "from_email": "From address",
                  "reply_to": "Reply-To address", "postal_address": "Postal address"}
        widgets = {"postal_address": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"reply_to": "Optional: where replies go, if not to the From address."}
        error_messages = {
            "name": {"required": "Give this sender a name you will recognise, e.g. Newsletter."},
            "from_name": {"required": "Enter the name your subscribers see, e.g. your shop's name."},
            "from_email": {"required": "Enter the address messages come from."},
            "postal_address": {"required": "Enter the postal address printed in every footer."},
        }


# --- Layouts and templates ---------------------------------------------------------------


class LayoutForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name",)

    class Meta:
        model = Layout
        fields = ("name", "html")
        labels = {"html": "Layout HTML"}
        widgets = {"html": forms.Textarea(attrs={"rows": 18, "spellcheck": "false", "class": "code"})}
        help_texts = {"html": "A full HTML page with exactly one {{ content }} where each message goes."}


# What a new broadcast or template starts with: it already carries the footer every
# message must have (unsubscribe link, postal address), so a first draft can be sent.
STARTER_BODY = """<p>Hello {{ subscriber.first_name | default: "there" }},</p>

<p>Write your message here.</p>

<p style="font-size: 12px; color: #666666;">
  You receive this because you subscribed to {{ list.name }}.
  <a href="{{ unsubscribe_url }}">Unsubscribe</a><br>
  {{ sender.postal_address | newline_to_br }}
</p>
"""
CONTENT_WIDGETS = {
    "body": forms.Textarea(attrs={"rows": 16, "spellcheck": "false", "class": "code"}),
    "text_body": forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "class": "code"}),
}
CONTENT_HELP = {
    "subject": "Liquid works here too, e.g. {{ subscriber.first_name | default: \"Hello\" }}, your news.",
    "body": "Use {{ subscriber.first_name }}, {{ unsubscribe_url }}, {{ sender.postal_address }} …",
    "text_body": "Optional. Empty: written for you from the body.",
}


class TemplateForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name", "subject")

    class Meta:
        model = Template
        fields = ("name", "subject", "body_format", "body", "text_body", "layout")
        labels = {"body_format": "Body format", "text_body": "Plain-text version"}
        widgets = CONTENT_WIDGETS
        help_texts = CONTENT_HELP

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["layout"].empty_label = "No layout"


# --- Broadcasts ----------------------------------------------------------------------------


BROADCAST_GROUPS = (
    ("Message", ("name", "sender", "subject", "body_format", "layout", "body", "text_body")),
    ("Recipients", ("lists", "segment")),
    ("Sending", ("backend", "track_opens", "track_clicks")),
)


class BroadcastForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name", "subject")

    class Meta:
        model = Broadcast
        fields = (
            "name", "sender", "subject", "body_format", "body", "text_body", "layout",
            "lists", "segment", "backend", "track_opens", "track_clicks",
        )
        labels = {
            "sender": "From", "body_format": "Body format", "text_body": "Plain-text version",
            "lists": "Send to these lists", "backend": "Send through",
            "track_opens": "Track opens", "track_clicks": "Track clicks",
        }
        widgets = {**CONTENT_WIDGETS, "lists": forms.CheckboxSelectMultiple}
        error_messages = {
            "sender": {"required": "Choose who the broadcast is from. No choice? An admin adds senders in Settings."},
            "name": {"required": "Give the broadcast a name; only you and your team see it."},
            "subject": {"required": "Write a subject line."},
            "body": {"required": "Write the message, or start from a saved template."},
        }
        help_texts = {**CONTENT_HELP, "segment": "Optional: only subscribers matching this segment.", "backend": "",
                      "lists": "Each subscriber gets one message, however many of these lists they are on."}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["lists"].queryset = MailingList.objects.filter(is_archived=False).order_by("name")
        self.fields["segment"].queryset = Segment.objects.order_by("name")
        self.fields["segment"].empty_label = "No segment"
        self.fields["layout"].empty_label = "No layout"
        self.fields["backend"].queryset = Backend.objects.filter(is_active=True)
        self.fields["backend"].empty_label = "Automatic: the backends in priority order"
        self.fields["sender"].empty_label = None if SenderIdentity.objects.exists() else "—"

    def groups(self):
        return field_groups(self, BROADCAST_GROUPS)

    def clean(self):
        data = super().clean()
        if not data.get("lists") and not data.get("segment") and "lists" not in self.errors:
            self.add_error("lists", "Choose at least one list or a segment.")
        return data


class TestSendForm(forms.Form):
    email = forms.EmailField(label="Send a test to", max_length=254,
                             widget=forms.EmailInput(attrs={"autocomplete": "email"}))

    def clean_email(self):
        return one_line(self.cleaned_data["email"], "The address")


class ScheduleForm(forms.Form):
    scheduled_at = forms.DateTimeField(
        label="Send at", widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
    )
    in_subscriber_time_zone = forms.BooleanField(
        required=False, label="At this local time in each subscriber's time zone",
        help_text="Subscribers without a time zone get it at this time in the site's time zone.",
    )

    def clean_scheduled_at(self):
        value = self.cleaned_data["scheduled_at"]
        # With local times, subscribers east of us reach that time up to 14 hours earlier.
        if value <= timezone.now() - timedelta(hours=14):
            raise forms.ValidationError("This time is in the past. Pick a later time, or send now.")
        return value

    def clean(self):
        data = super().clean()
        at = data.get("scheduled_at")
        if at and not data.get("in_subscriber_time_zone") and at <= timezone.now():
            self.add_error("scheduled_at", "This time is in the past. Pick a later time, or send now.")
        return data
