"""
Serializers of the lists API (lists/api.py). They shape input and output only:
checks that matter everywhere are lists.validation's and the dashboard form's,
and every change goes through lists.services.
"""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from autoresponder.api_base import FormSerializer, StrictSerializerMixin

from .bulk import MAX_ITEMS, MODES
from .forms import MailingListForm
from .models import ImportJob, MailingList, Segment, Subscriber, Subscription, Suppression, Tag
from .segments import clean_conditions, validate_conditions

LIST_FORM_FIELDS = MailingListForm._meta.fields


class FormFieldSerializer(StrictSerializerMixin, serializers.Serializer):
    name = serializers.CharField(max_length=40)
    label = serializers.CharField(max_length=100, required=False, allow_blank=True)
    required = serializers.BooleanField(required=False, default=False)


class MailingListSerializer(FormSerializer):
    """A list. Input is checked by the dashboard's MailingListForm, so the API accepts exactly
    what the dashboard accepts (Liquid confirmation texts that parse, {{ confirm_url }}, …)."""

    form_fields = FormFieldSerializer(many=True, required=False)

    class Meta:
        model = MailingList
        form_class = MailingListForm
        fields = ["id", "public_id", *LIST_FORM_FIELDS, "created_at", "updated_at"]
        read_only_fields = ["id", "public_id", "created_at", "updated_at"]

    def form_data(self, attrs):
        data = super().form_data(attrs)
        data["form_fields"] = "\n".join(_form_field_line(f) for f in data.get("form_fields") or [])
        return data


def _form_field_line(field):
    return " | ".join([field["name"], field.get("label", "")] + (["required"] if field.get("required") else []))


class TagSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name", "created_at"]
        read_only_fields = ["id", "created_at"]


class MembershipSerializer(serializers.ModelSerializer):
    list = serializers.IntegerField(source="mailing_list_id")

    class Meta:
        model = Subscription
        fields = ["id", "list", "status"]


class SubscriberSerializer(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    subscriptions = MembershipSerializer(many=True, read_only=True)

    class Meta:
        model = Subscriber
        fields = ["id", "email", "name", "attributes", "time_zone", "status", "tags", "subscriptions",
                  "is_role_address", "is_disposable_address", "has_no_mx", "created_at", "updated_at"]
        read_only_fields = fields


class ProfileSerializer(StrictSerializerMixin, serializers.Serializer):
    """The profile fields a subscriber's PATCH may change (lists.services.update_subscriber)."""

    email = serializers.CharField(required=False, max_length=254)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    attributes = serializers.DictField(required=False)
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)


class ConsentSerializerMixin(serializers.Serializer):
    """The consent record a calling system relays from its own signup form (all optional)."""

    consent_ip = serializers.IPAddressField(required=False, allow_null=True)
    consent_user_agent = serializers.CharField(required=False, allow_blank=True, max_length=500)
    consent_form = serializers.CharField(required=False, allow_blank=True, max_length=200)
    consent_text = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class NewSubscriberSerializer(ConsentSerializerMixin, ProfileSerializer):
    email = serializers.CharField(max_length=254)
    lists = serializers.PrimaryKeyRelatedField(queryset=MailingList.objects.all(), many=True, allow_empty=False)
    double_opt_in = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="null: each list's own opt-in; true: send a confirmation mail; false: confirmed at once "
                  "(you vouch for consent).",
    )
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)


class NewSubscriptionSerializer(StrictSerializerMixin, ConsentSerializerMixin, serializers.Serializer):
    list = serializers.PrimaryKeyRelatedField(queryset=MailingList.objects.all())
    email = serializers.CharField(max_length=254)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    attributes = serializers.DictField(required=False)
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    double_opt_in = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="null: the list's own opt-in; true: send a confirmation mail; false: confirmed at once.",
    )


class SubscriptionSerializer(serializers.ModelSerializer):
    list = serializers.IntegerField(source="mailing_list_id", read_only=True)
    subscriber = serializers.IntegerField(source="subscriber_id", read_only=True)
    email = serializers.CharField(source="subscriber.email", read_only=True)

    class Meta:
        model = Subscription
        fields = ["id", "list", "subscriber", "email", "status", "source", "created_at", "updated_at",
                  "consent_at", "consent_ip", "consent_user_agent", "consent_form", "consent_text",
                  "confirmed_at", "confirm_ip", "unsubscribed_at", "unsubscribe_reason"]
        read_only_fields = fields


class ReasonSerializer(StrictSerializerMixin, serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class TagNamesSerializer(StrictSerializerMixin, serializers.Serializer):
    tags = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=False, max_length=100)


class SegmentSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    conditions = serializers.ListField(
        child=serializers.DictField(), help_text='[{"field": "attributes.plan", "op": "is", "value": "pro"}, …] '
                                                 "(see lists/segments.py for fields and operators)")

    class Meta:
        model = Segment
        fields = ["id", "name", "match", "conditions", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        conditions = attrs.get("conditions", self.instance.conditions if self.instance else [])
        match = attrs.get("match", self.instance.match if self.instance else Segment.ALL)
        errors = validate_conditions(conditions, match)
        if errors:
            raise serializers.ValidationError({"conditions": errors})
        attrs["conditions"] = clean_conditions(conditions)
        return attrs


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class SuppressionSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    reason = serializers.ChoiceField(choices=Suppression.REASON_CHOICES, default=Suppression.MANUAL)

    class Meta:
        model = Suppression
        fields = ["id", "email", "reason", "detail", "created_at"]
        read_only_fields = ["id", "created_at"]
        extra_kwargs = {"email": {"validators": []}, "detail": {"max_length": 5000}}


class UnsubscribeSerializer(StrictSerializerMixin, serializers.Serializer):
    email = serializers.CharField(max_length=254)
    list = serializers.PrimaryKeyRelatedField(
        queryset=MailingList.objects.all(), required=False, allow_null=True, default=None,
        help_text="Only this list; without it, every list (as “unsubscribe from all”).",
    )
    reason = serializers.CharField(required=False, allow_blank=True, max_length=200, default="")


class UnsubscribeResultSerializer(serializers.Serializer):
    email = serializers.CharField()
    found = serializers.BooleanField(help_text="Whether a subscriber has this address.")
    unsubscribed = serializers.IntegerField(help_text="Subscriptions changed by this call (0 when run again).")


class BulkItemSerializer(serializers.Serializer):
    """One subscriber of a bulk request (checked by lists.bulk.checked, documented here)."""

    email = serializers.CharField(max_length=254)
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    time_zone = serializers.CharField(required=False, allow_blank=True, max_length=64)
    attributes = serializers.DictField(
        required=False, help_text="Names (letters, digits, _ . -) and JSON values, kept with their types: text, "
                                  "numbers, true/false, null, lists and objects (at most 4 levels deep).")


@extend_schema_field(BulkItemSerializer(many=True))
class BulkItemsField(serializers.ListField):
    """Items pass through as they are: lists.bulk checks each one and reports the invalid ones
    by index while the valid ones still go in (a serializer would refuse the whole request)."""

    def to_internal_value(self, data):
        if not isinstance(data, list):
            raise serializers.ValidationError("Expected a list of subscribers.")
        if not data:
            raise serializers.ValidationError("Send at least one subscriber.")
        if len(data) > MAX_ITEMS:
            raise serializers.ValidationError(f"At most {MAX_ITEMS} subscribers per request.")
        return data


class BulkSerializer(StrictSerializerMixin, serializers.Serializer):
    list = serializers.PrimaryKeyRelatedField(queryset=MailingList.objects.all())
    mode = serializers.ChoiceField(choices=[(m, m) for m in MODES], default=ImportJob.UPSERT,
                                   help_text="add: new addresses only; upsert: also update known ones.")
    confirmed = serializers.BooleanField(
        default=True, help_text="true: you vouch for consent, new subscriptions are confirmed; "
                                "false: each new subscriber gets a confirmation mail.")
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False, max_length=100)
    # Items are checked one by one by the service, so an invalid one is reported while the rest go in.
    subscribers = BulkItemsField()


class BulkProblemSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    email = serializers.CharField(allow_blank=True)
    reason = serializers.CharField()


class BulkResultSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    skipped = serializers.IntegerField()
    invalid = serializers.IntegerField()
    problems = BulkProblemSerializer(many=True)
