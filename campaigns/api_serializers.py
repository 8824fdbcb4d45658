"""
Serializers of the campaigns API (campaigns/api.py). Input is checked by the
dashboard's forms through autoresponder.api_base.FormSerializer, so a template
that does not parse is refused with its line, a header field with a line break
is refused, and a backend keeps its secrets write-only, exactly as in the
dashboard.
"""

from rest_framework import serializers

from autoresponder.api_base import FormSerializer, StrictSerializerMixin

from . import broadcasts as service
from .dashboard_services import dkim_dns_record
from .forms import (
    ESP_OPTION_FIELDS,
    KIND_FIELDS,
    SECRETS,
    BackendForm,
    BroadcastForm,
    LayoutForm,
    SenderIdentityForm,
    TemplateForm,
)
from .models import Backend, Broadcast, Event, Layout, SenderIdentity, Template


class SenderIdentitySerializer(FormSerializer):
    class Meta:
        model = SenderIdentity
        form_class = SenderIdentityForm
        fields = ["id", *SenderIdentityForm._meta.fields, "created_at"]
        read_only_fields = ["id", "created_at"]


class LayoutSerializer(FormSerializer):
    class Meta:
        model = Layout
        form_class = LayoutForm
        fields = ["id", *LayoutForm._meta.fields, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class TemplateSerializer(FormSerializer):
    class Meta:
        model = Template
        form_class = TemplateForm
        fields = ["id", *TemplateForm._meta.fields, "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


# --- Broadcasts --------------------------------------------------------------------------------

BROADCAST_STATE = [
    "status", "scheduled_at", "in_subscriber_time_zone", "pause_reason", "recipients_count", "sent_count",
    "failed_count", "skipped_count", "unknown_count", "cancelled_count", "created_at", "updated_at",
    "started_at", "finished_at", "cost",
]


class BroadcastSerializer(FormSerializer):
    """A broadcast. Content and recipients can be changed while it is a draft."""

    class Meta:
        model = Broadcast
        form_class = BroadcastForm
        fields = ["id", *BroadcastForm._meta.fields, *BROADCAST_STATE]
        read_only_fields = ["id", *BROADCAST_STATE]

    def create(self, validated_data):
        request = self.context["request"]
        return service.create(**self.form.cleaned_data, created_by=request.user)


class ScheduleSerializer(StrictSerializerMixin, serializers.Serializer):
    scheduled_at = serializers.DateTimeField(help_text="With its time zone, e.g. 2030-05-01T09:00:00+02:00.")
    in_subscriber_time_zone = serializers.BooleanField(default=False)


class PauseSerializer(StrictSerializerMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class StatisticsSerializer(serializers.Serializer):
    status = serializers.CharField()
    status_label = serializers.CharField()
    recipients = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()
    skipped = serializers.IntegerField()
    unknown = serializers.IntegerField()
    cancelled = serializers.IntegerField()
    pending = serializers.IntegerField()
    percent = serializers.IntegerField()
    pause_reason = serializers.CharField(allow_blank=True)
    is_written = serializers.BooleanField(help_text="Whether the ledger (one row per recipient) is written.")
    bounced = serializers.IntegerField(help_text="Failed messages whose address is now suppressed as a hard bounce.")
    recipients_now = serializers.IntegerField(
        allow_null=True, help_text="How many it would reach if sent now (drafts and scheduled only).")
    recipients_counted_at = serializers.DateTimeField(
        allow_null=True, help_text="When recipients_now was counted (kept a minute; ?fresh=1 counts again).")


# --- Backends ----------------------------------------------------------------------------------


class EspOptionsSerializer(StrictSerializerMixin, serializers.Serializer):
    region = serializers.CharField(required=False, allow_blank=True, max_length=40)
    configuration_set_name = serializers.CharField(required=False, allow_blank=True, max_length=100)
    message_stream = serializers.CharField(required=False, allow_blank=True, max_length=100)
    sender_domain = serializers.CharField(required=False, allow_blank=True, max_length=255)
    api_url = serializers.CharField(required=False, allow_blank=True, max_length=255)


def _secret(label):
    return serializers.CharField(
        write_only=True, required=False, allow_blank=True, trim_whitespace=False,
        help_text=f"{label}; write-only. Left out: kept. Empty string: removed.",
    )


class BackendSerializer(FormSerializer):
    password = _secret("SMTP password")
    api_key = _secret("ESP API key (SES: access key id)")
    api_secret = _secret("ESP secret (SES: secret access key)")
    dkim_private_key = _secret("DKIM private key (PEM)")
    dkim_generate = serializers.ChoiceField(
        choices=[("ed25519", "ed25519"), ("rsa", "rsa")], required=False, write_only=True,
        help_text="Generate a new DKIM key for dkim_domain and dkim_selector.")
    esp_options = EspOptionsSerializer(required=False)
    give_up_hours = serializers.IntegerField(required=False, min_value=1, max_value=24 * 30)
    has_password = serializers.SerializerMethodField()
    has_api_key = serializers.SerializerMethodField()
    has_api_secret = serializers.SerializerMethodField()
    has_dkim_private_key = serializers.SerializerMethodField()
    dkim_dns_record = serializers.SerializerMethodField()

    class Meta:
        model = Backend
        form_class = BackendForm
        health = ["last_ok_at", "last_error", "last_error_at", "consecutive_failures", "down_until", "env_key",
                  "created_at", "updated_at"]
        fields = ["id", "kind", *BackendForm._meta.fields, "dkim_generate", "esp_options", "give_up_hours",
                  "has_password", "has_api_key", "has_api_secret", "has_dkim_private_key", "dkim_dns_record", *health]
        read_only_fields = ["id", *health]

    def get_has_password(self, backend) -> bool:
        return bool(backend.password)

    def get_has_api_key(self, backend) -> bool:
        return bool(backend.api_key)

    def get_has_api_secret(self, backend) -> bool:
        return bool(backend.api_secret)

    def get_has_dkim_private_key(self, backend) -> bool:
        return bool(backend.dkim_private_key)

    def get_dkim_dns_record(self, backend) -> dict | None:
        record = dkim_dns_record(backend)
        return {"name": record[0], "value": record[1]} if record else None

    def to_representation(self, backend):
        data = super().to_representation(backend)
        data["give_up_hours"] = int(backend.give_up_after.total_seconds() // 3600) or 1
        return data

    def validate_kind(self, kind):
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError("The kind of a backend cannot change; create another backend.")
        return kind

    def form_kwargs(self):
        kind = self.instance.kind if self.instance else self.initial_data.get("kind", Backend.SMTP)
        return {"kind": kind if kind in KIND_FIELDS else Backend.SMTP}

    def initial_form_data(self):
        backend = self.instance if self.instance is not None else Backend()
        data = {k: v for k, v in super().initial_form_data().items() if k not in SECRETS}
        data.update({name: value for name, value in (backend.esp_options or {}).items() if name in ESP_OPTION_FIELDS})
        data["give_up_hours"] = int(backend.give_up_after.total_seconds() // 3600) or 1
        return data

    def form_data(self, attrs):
        attrs = dict(attrs)
        options = attrs.pop("esp_options", None) or {}
        attrs.pop("kind", None)
        data = super().form_data(attrs)
        data.update(options)
        for name in SECRETS:
            if attrs.get(name) == "":
                data.pop(name, None)
                data[f"clear_{name}"] = True
        return data


class ConnectionResultSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    detail = serializers.CharField()


class EventSerializer(serializers.ModelSerializer):
    subscriber = serializers.IntegerField(source="subscriber_id", allow_null=True, read_only=True)
    url = serializers.CharField(allow_null=True, read_only=True, help_text="The clicked link (clicks only).")

    class Meta:
        model = Event
        fields = ["id", "kind", "message", "subscriber", "scope", "scope_id", "url", "is_machine", "source", "detail",
                  "created_at"]
        read_only_fields = fields
