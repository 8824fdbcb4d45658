"""
Sequences in the REST API: build a sequence and its steps, switch it on, pause
and resume it, and enroll or remove a subscriber (the API trigger). Input is
checked by the dashboard's forms (campaigns/forms_sequences.py); every change
is a campaigns.sequences service call.
"""

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from autoresponder.api_base import DomainError, FormSerializer, StrictSerializerMixin, validated
from lists.models import Subscriber
from lists.services import find_subscriber

from . import scheduling, sequences
from .api_serializers import PauseSerializer
from .forms_sequences import SequenceForm, StepForm
from .models import Enrollment, Sequence, Step

METHODS = ["get", "post", "patch", "delete", "head", "options"]


class SequenceSerializer(FormSerializer):
    class Meta:
        model = Sequence
        form_class = SequenceForm
        state = ["status", "pause_reason", "activated_at", "created_at", "updated_at"]
        fields = ["id", *SequenceForm._meta.fields, *state]
        read_only_fields = ["id", *state]

    def create(self, validated_data):
        data = dict(self.form.cleaned_data)
        return sequences.create_sequence(created_by=self.context["request"].user, **data)

    def update(self, sequence, validated_data):
        fields = {k: v for k, v in self.form.cleaned_data.items() if not self.form.fields[k].disabled}
        return sequences.update_sequence(sequence, **fields)


class StepSerializer(FormSerializer):
    sequence = serializers.PrimaryKeyRelatedField(queryset=Sequence.objects.all())
    weekdays = serializers.ListField(
        child=serializers.IntegerField(min_value=0, max_value=6), required=False,
        help_text="Days the step may go out, 0 Monday … 6 Sunday, in the subscriber's time zone (default: all).")
    position = serializers.IntegerField(min_value=1, required=False,
                                        help_text="On create: insert before the step now at this position.")

    class Meta:
        model = Step
        form_class = StepForm
        fields = ["id", "sequence", "position", "is_active", *StepForm._meta.fields, "weekdays", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "is_active", "created_at", "updated_at"]

    def validate_sequence(self, sequence):
        if self.instance is not None and sequence.pk != self.instance.sequence_id:
            raise serializers.ValidationError("A step cannot move to another sequence.")
        return sequence

    def to_representation(self, step):
        data = super().to_representation(step)
        data["weekdays"] = sorted(scheduling.weekdays_from_mask(step.window_weekdays))
        return data

    def initial_form_data(self):
        data = super().initial_form_data()
        mask = self.instance.window_weekdays if self.instance is not None else 127
        data["weekdays"] = sorted(scheduling.weekdays_from_mask(mask))
        return data

    def form_data(self, attrs):
        attrs = {k: v for k, v in attrs.items() if k not in ("sequence", "position")}
        return super().form_data(attrs)

    def create(self, validated_data):
        options = self.form.options()
        return sequences.add_step(validated_data["sequence"], position=validated_data.get("position"), **options)

    def update(self, step, validated_data):
        return sequences.update_step(step, **self.form.options())


class EnableSerializer(StrictSerializerMixin, serializers.Serializer):
    enroll_existing = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="First switch-on only: also enroll those already subscribed (or tagged). null: the setting.")


class WhoSerializer(StrictSerializerMixin, serializers.Serializer):
    subscriber = serializers.PrimaryKeyRelatedField(queryset=Subscriber.objects.all(), required=False)
    email = serializers.CharField(required=False, max_length=254)

    def validate(self, attrs):
        subscriber = attrs.get("subscriber")
        if subscriber is None and attrs.get("email"):
            subscriber = find_subscriber(attrs["email"])
            if subscriber is None:
                raise serializers.ValidationError({"email": ["No subscriber has this address."]})
        if subscriber is None:
            raise serializers.ValidationError({"subscriber": ["Give the subscriber's id or email."]})
        return {"subscriber": subscriber}


class EnrollmentSerializer(serializers.ModelSerializer):
    class Meta:
        model = Enrollment
        fields = ["id", "sequence", "subscriber", "status", "exit_reason", "source", "entry", "position",
                  "next_step_at", "entered_at", "ended_at"]
        read_only_fields = fields


class EnrollResultSerializer(serializers.Serializer):
    entered = serializers.BooleanField(help_text="false: already in it, and the re-entry rule keeps them there.")
    enrollment = EnrollmentSerializer()


class RemoveResultSerializer(serializers.Serializer):
    removed = serializers.BooleanField(help_text="false: they were not in the sequence.")


class MoveSerializer(StrictSerializerMixin, serializers.Serializer):
    position = serializers.IntegerField(min_value=1)


class StepStateSerializer(StrictSerializerMixin, serializers.Serializer):
    is_active = serializers.BooleanField(help_text="false pauses the step (it is skipped); true resumes it.")



def _sequence_call(function, *args, **kwargs):
    try:
        return function(*args, **kwargs)
    except sequences.SequenceError as exc:
        raise DomainError(None, exc)


class SequenceViewSet(viewsets.ModelViewSet):
    """Autoresponders: ordered steps each subscriber who enters gets on their own clock."""

    queryset = Sequence.objects.select_related("mailing_list", "sender")
    serializer_class = SequenceSerializer
    filterset_fields = ["status", "mailing_list", "trigger"]
    ordering_fields = ["id", "name", "created_at"]
    ordering = "id"
    http_method_names = METHODS

    def perform_destroy(self, sequence):
        sequences.delete_sequence(sequence)

    @extend_schema(request=EnableSerializer, responses=SequenceSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request, pk=None):
        """Switch a draft or paused sequence on (400 with what to fix when it cannot run)."""
        data = validated(EnableSerializer, request.data)
        sequence = _sequence_call(sequences.enable, self.get_object(), enroll_existing=data["enroll_existing"])
        return Response(SequenceSerializer(sequence).data)

    @extend_schema(request=PauseSerializer, responses=SequenceSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Hold everyone in place. Idempotent."""
        data = validated(PauseSerializer, request.data)
        return Response(SequenceSerializer(sequences.pause(self.get_object(), reason=data["reason"])).data)

    @extend_schema(request=None, responses=SequenceSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        """Go on; steps that became stale meanwhile are skipped, not sent late."""
        return Response(SequenceSerializer(_sequence_call(sequences.resume, self.get_object())).data)

    @extend_schema(request=WhoSerializer, responses={200: EnrollResultSerializer, 201: EnrollResultSerializer})
    @action(detail=True, methods=["post"])
    def enroll(self, request, pk=None):
        """Put a confirmed subscriber of the sequence's list into it now (the API trigger)."""
        who = validated(WhoSerializer, request.data)
        enrollment, entered = _sequence_call(sequences.enroll, self.get_object(), who["subscriber"])
        body = {"entered": entered, "enrollment": EnrollmentSerializer(enrollment).data}
        return Response(body, status=status.HTTP_201_CREATED if entered else status.HTTP_200_OK)

    @extend_schema(request=WhoSerializer, responses=RemoveResultSerializer)
    @action(detail=True, methods=["post"])
    def remove(self, request, pk=None):
        """Take a subscriber out; their queued mail from the sequence is cancelled. Idempotent."""
        who = validated(WhoSerializer, request.data)
        return Response({"removed": sequences.remove(self.get_object(), who["subscriber"])})

    @extend_schema(responses=EnrollmentSerializer(many=True))
    @action(detail=True, methods=["get"])
    def enrollments(self, request, pk=None):
        """Who is in the sequence (or was), newest first."""
        queryset = Enrollment.objects.filter(sequence=self.get_object())
        wanted = request.query_params.get("status")
        if wanted in dict(Enrollment.STATUS_CHOICES):
            queryset = queryset.filter(status=wanted)
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(EnrollmentSerializer(page, many=True).data)


class StepFilter(django_filters.FilterSet):
    class Meta:
        model = Step
        fields = ["sequence", "is_active"]


class StepViewSet(viewsets.ModelViewSet):
    """The steps of sequences (filter with ?sequence=<id>), in order."""

    queryset = Step.objects.all()
    serializer_class = StepSerializer
    filterset_class = StepFilter
    ordering_fields = ["position", "id"]
    ordering = "id"
    http_method_names = METHODS

    def perform_destroy(self, step):
        sequences.delete_step(step)

    @extend_schema(request=MoveSerializer, responses=StepSerializer)
    @action(detail=True, methods=["post"])
    def move(self, request, pk=None):
        """Move the step to a 1-based position; everyone goes on after the step they last got."""
        step = self.get_object()
        sequences.move_step(step, validated(MoveSerializer, request.data)["position"])
        step.refresh_from_db()
        return Response(StepSerializer(step).data)

    @extend_schema(request=StepStateSerializer, responses=StepSerializer)
    @action(detail=True, methods=["post"])
    def state(self, request, pk=None):
        """Pause (skip) or resume the step."""
        step = self.get_object()
        with transaction.atomic():
            sequences.set_step_active(step, validated(StepStateSerializer, request.data)["is_active"])
        return Response(StepSerializer(step).data)


def register(router):
    router.register("sequences", SequenceViewSet, basename="sequence")
    router.register("steps", StepViewSet, basename="step")
