"""
The REST API for what is sent: sender identities, layouts, templates,
broadcasts (create, schedule, send, pause, resume, cancel, statistics),
sending backends (secrets are write-only) and the events of sent messages
(read-only: opens, clicks, bounces, complaints …). Input is checked by the dashboard's
forms (campaigns/forms.py) and every state change is a campaigns.broadcasts
service call; serializers are in api_serializers.py. Sequences are in
api_sequences.py, hooks in api_hooks.py.

Roles as in the dashboard: viewers read; editors write content and
broadcasts; admins write sender identities and backends.
"""

import django_filters
from django.db import transaction
from django.db.models import F
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from autoresponder.api_base import NON_FIELD, UTCDateTimeFilter, validated

from . import backends as transports
from . import broadcasts as service
from .api_serializers import (
    BackendSerializer,
    BroadcastSerializer,
    ConnectionResultSerializer,
    EventSerializer,
    LayoutSerializer,
    PauseSerializer,
    ScheduleSerializer,
    SenderIdentitySerializer,
    StatisticsSerializer,
    TemplateSerializer,
)
from .dashboard_services import bounced_count
from .models import Backend, Broadcast, Event, Layout, SenderIdentity, Template

CONFLICT = OpenApiResponse(description="The broadcast is not in a state that allows this (the detail says why).")
UPDATE_METHODS = ["get", "post", "patch", "delete", "head", "options"]


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class SenderIdentityViewSet(viewsets.ModelViewSet):
    """Who messages are from (From name and address, Reply-To, postal address)."""

    queryset = SenderIdentity.objects.all()
    serializer_class = SenderIdentitySerializer
    write_role = "admin"
    filterset_fields = {"name": ["exact", "icontains"]}
    ordering_fields = ["id", "name"]
    ordering = "id"
    http_method_names = UPDATE_METHODS


class LayoutViewSet(viewsets.ModelViewSet):
    """Base templates around each message's content; exactly one {{ content }} slot."""

    queryset = Layout.objects.all()
    serializer_class = LayoutSerializer
    filterset_fields = {"name": ["exact", "icontains"]}
    ordering_fields = ["id", "name", "updated_at"]
    ordering = "id"
    http_method_names = UPDATE_METHODS


class TemplateViewSet(viewsets.ModelViewSet):
    """Saved content. A template that does not parse is refused with its line and reason."""

    queryset = Template.objects.all()
    serializer_class = TemplateSerializer
    filterset_fields = {"name": ["exact", "icontains"], "layout": ["exact"]}
    ordering_fields = ["id", "name", "updated_at"]
    ordering = "id"
    http_method_names = UPDATE_METHODS


# --- Broadcasts ---------------------------------------------------------------------------------


class BroadcastFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Broadcast
        fields = ["status", "sender", "segment", "name", "created_after", "created_before"]


class BroadcastViewSet(viewsets.ModelViewSet):
    """One-off sends to lists and/or a segment. Drafts are edited; then send, schedule, pause,
    resume, cancel. Each action moves the broadcast once: a second identical call gets 409."""

    queryset = Broadcast.objects.select_related("sender").prefetch_related("lists")
    serializer_class = BroadcastSerializer
    filterset_class = BroadcastFilter
    ordering_fields = ["id", "created_at", "scheduled_at", "name"]
    ordering = "-id"
    http_method_names = UPDATE_METHODS

    def perform_update(self, serializer):
        # The row lock keeps a "send" from starting a half-edited draft (as the dashboard does).
        with transaction.atomic():
            if not Broadcast.objects.select_for_update().filter(pk=serializer.instance.pk,
                                                                status=Broadcast.DRAFT).exists():
                raise Conflict(_not_editable(serializer.instance))
            serializer.save()

    def perform_destroy(self, instance):
        if not Broadcast.objects.filter(pk=instance.pk, status=Broadcast.DRAFT).delete()[0]:
            raise Conflict("Only drafts can be deleted; cancel a broadcast to stop it.")

    def _act(self, action_function, already, **kwargs):
        broadcast = self.get_object()
        try:
            moved = action_function(broadcast, **kwargs)
        except service.BroadcastError as exc:  # each reason on its own (the pre-send check's errors among them)
            raise exceptions.ValidationError({NON_FIELD: exc.reasons})
        if not moved:
            raise Conflict(already)
        return Response(self.get_serializer(broadcast).data)

    @extend_schema(request=None, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def send(self, request, pk=None):
        """Send now (400 listing what to fix, the pre-send check's errors among them, when it cannot be sent)."""
        return self._act(service.send_now, "This broadcast was already started; it is sent once.")

    @extend_schema(request=ScheduleSerializer, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def schedule(self, request, pk=None):
        """Send at a time, optionally at that wall-clock time in each subscriber's time zone."""
        data = validated(ScheduleSerializer, request.data)
        return self._act(service.schedule, "This broadcast is no longer a draft or scheduled.",
                         when=data["scheduled_at"], in_subscriber_time_zone=data["in_subscriber_time_zone"])

    @extend_schema(request=None, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def unschedule(self, request, pk=None):
        """Back to draft."""
        return self._act(service.unschedule, "It was not scheduled.")

    @extend_schema(request=PauseSerializer, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Stop after the messages in flight; resume continues where it stopped."""
        data = validated(PauseSerializer, request.data)
        return self._act(service.pause, "It was not sending.", reason=data["reason"])

    @extend_schema(request=None, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(service.resume, "It was not paused.")

    @extend_schema(request=None, responses={200: BroadcastSerializer, 409: CONFLICT})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Stop for good; messages not yet sent are cancelled."""
        return self._act(service.cancel, "It had already finished or was cancelled.")

    @extend_schema(responses=StatisticsSerializer, parameters=[OpenApiParameter(
        "fresh", bool, description="Count the recipients again now rather than use a count up to a minute old.")])
    @action(detail=True, methods=["get"])
    def statistics(self, request, pk=None):
        """Progress and outcome counters (kept by the pipeline). For a draft or scheduled broadcast,
        `recipients_now` is counted at most once a minute per audience (the dashboard's count)."""
        broadcast = self.get_object()
        figures = service.progress(broadcast)
        figures["bounced"] = bounced_count(broadcast)
        figures["recipients_now"] = figures["recipients_counted_at"] = None
        if broadcast.is_editable:
            counted = service.counted_recipients(broadcast, fresh=request.query_params.get("fresh") in ("1", "true"))
            figures["recipients_now"], figures["recipients_counted_at"] = counted["count"], counted["counted_at"]
        return Response(StatisticsSerializer(figures).data)


def _not_editable(broadcast):
    if broadcast.status == Broadcast.SCHEDULED:
        return "This broadcast is scheduled. Unschedule it (back to draft) to edit it."
    return f"This broadcast is {broadcast.get_status_display().lower()} and can no longer be edited."



# --- Backends -----------------------------------------------------------------------------------


class BackendViewSet(viewsets.ModelViewSet):
    """Sending routes. Secrets (password, API key and secret, DKIM private key) are write-only:
    never returned; `has_…` says whether one is saved; an empty string removes it; leaving the
    field out keeps it."""

    queryset = Backend.objects.all()
    serializer_class = BackendSerializer
    write_role = "admin"
    filterset_fields = ["kind", "is_active"]
    ordering_fields = ["id", "priority", "name"]
    ordering = "id"
    http_method_names = UPDATE_METHODS

    @extend_schema(request=None, responses=ConnectionResultSerializer)
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Reach the backend without sending anything."""
        ok, text = transports.check_connection(self.get_object())
        return Response({"ok": ok, "detail": text})


# --- Events ---------------------------------------------------------------------------------------


class EventFilter(django_filters.FilterSet):
    kind = django_filters.MultipleChoiceFilter(choices=Event.KIND_CHOICES, help_text="One or more event types.")
    created_after = UTCDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UTCDateTimeFilter(field_name="created_at", lookup_expr="lt")
    broadcast = django_filters.NumberFilter(method="in_broadcast", help_text="Broadcast id.")
    step = django_filters.NumberFilter(method="in_step", help_text="Sequence step id.")
    subscriber = django_filters.NumberFilter(field_name="message__subscriber_id", help_text="Subscriber id.")
    message = django_filters.NumberFilter(field_name="message_id")
    include_machine = django_filters.BooleanFilter(
        method="with_machine", help_text="Also scanners' and prefetchers' opens and clicks (left out by default).")

    class Meta:
        model = Event
        fields = ["kind", "created_after", "created_before", "broadcast", "step", "subscriber", "message"]

    def in_broadcast(self, queryset, name, value):
        return queryset.filter(scope=Event.BROADCAST, scope_id=value)

    def in_step(self, queryset, name, value):
        return queryset.filter(scope=Event.STEP, scope_id=value)

    def with_machine(self, queryset, name, value):
        return queryset

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        return queryset if self.form.cleaned_data.get("include_machine") else queryset.filter(is_machine=False)


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    """What happened to sent messages: opens, clicks, unsubscribes, deliveries, bounces, deferrals,
    complaints. Query by type, time, broadcast, step, subscriber or message; newest first."""

    queryset = Event.objects.annotate(subscriber_id=F("message__subscriber_id"), url=F("link__url"))
    serializer_class = EventSerializer
    filterset_class = EventFilter
    ordering_fields = ["id", "created_at"]
    ordering = "-id"


def register(router):
    """Add the campaigns resources to the API router (autoresponder/api.py)."""
    router.register("senders", SenderIdentityViewSet, basename="sender")
    router.register("layouts", LayoutViewSet, basename="layout")
    router.register("templates", TemplateViewSet, basename="template")
    router.register("broadcasts", BroadcastViewSet, basename="broadcast")
    router.register("backends", BackendViewSet, basename="backend")
    router.register("events", EventViewSet, basename="event")
