"""
REST hooks in the API (resthooks.org): POST /api/v1/hooks/ {event, target}
subscribes (the answer carries the signing secret, once), DELETE unsubscribes,
GET lists hooks and, per hook, its deliveries with their attempts. Admins
only, as in the dashboard: a hook sends subscriber data to another system.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from autoresponder.api_base import DomainError, StrictSerializerMixin, validated

from . import hooks
from .models import Hook, HookDelivery


class HookSerializer(serializers.ModelSerializer):
    owner = serializers.CharField(source="owner.get_username", read_only=True)

    class Meta:
        model = Hook
        fields = ["id", "event", "target", "owner", "is_active", "consecutive_failures", "last_success_at",
                  "last_failure_at", "disabled_at", "disabled_reason", "created_at"]
        read_only_fields = fields


class NewHookSerializer(StrictSerializerMixin, serializers.Serializer):
    event = serializers.ChoiceField(choices=[(name, name) for name in hooks.EVENT_NAMES])
    target = serializers.CharField(max_length=2000, help_text="An http(s) URL of a public server.")


class CreatedHookSerializer(HookSerializer):
    secret = serializers.CharField(read_only=True, help_text="Signs every delivery; shown only in this answer.")

    class Meta(HookSerializer.Meta):
        fields = [*HookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class HookStateSerializer(StrictSerializerMixin, serializers.Serializer):
    is_active = serializers.BooleanField(help_text="false disables the hook; true enables it again.")


class DeliverySerializer(serializers.ModelSerializer):
    attempt_log = serializers.ListField(child=serializers.DictField(), read_only=True)

    class Meta:
        model = HookDelivery
        fields = ["id", "uid", "event", "status", "attempts", "next_attempt_at", "expires_at", "last_status",
                  "last_error", "attempt_log", "body", "created_at", "delivered_at"]
        read_only_fields = fields


class HookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                  viewsets.GenericViewSet):
    """REST hook subscriptions. Each delivery is a JSON POST signed with
    `X-Autoresponder-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>`."""

    queryset = Hook.objects.select_related("owner")
    serializer_class = HookSerializer
    read_role = write_role = "admin"
    filterset_fields = ["event", "is_active"]
    ordering_fields = ["id", "created_at"]
    ordering = "-id"

    @extend_schema(request=NewHookSerializer, responses={201: CreatedHookSerializer})
    def create(self, request):
        """Subscribe a target URL to an event (the target must resolve to public addresses)."""
        try:
            hook = hooks.subscribe(owner=request.user, **validated(NewHookSerializer, request.data))
        except hooks.HookError as exc:
            raise DomainError(exc.field, exc.message)
        return Response(CreatedHookSerializer(hook).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, hook):
        hooks.unsubscribe(hook)

    @extend_schema(request=HookStateSerializer, responses=HookSerializer)
    def partial_update(self, request, pk=None):
        """Enable or disable the hook."""
        hook = self.get_object()
        if validated(HookStateSerializer, request.data)["is_active"]:
            hooks.enable(hook)
        else:
            hooks.disable(hook, f"Disabled by {request.user.get_username()} through the API.")
        return Response(HookSerializer(hook).data)

    @extend_schema(responses=DeliverySerializer(many=True))
    @action(detail=True, methods=["get"])
    def deliveries(self, request, pk=None):
        """The hook's deliveries, newest first, with every attempt."""
        queryset = HookDelivery.objects.filter(hook=self.get_object())
        page = self.paginate_queryset(self.filter_deliveries(queryset))
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    def filter_deliveries(self, queryset):
        wanted = self.request.query_params.get("status")
        return queryset.filter(status=wanted) if wanted in dict(HookDelivery.STATUS_CHOICES) else queryset
