"""
The REST API for the audience: lists, subscribers (with search, bulk upsert,
GDPR export and wipe), subscriptions, tags, segments, suppressions and the
unsubscribe endpoint. Thin: every change is a call to lists.services (or
lists.bulk); the router lives in autoresponder/api.py.
"""

import django_filters
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from autoresponder.api_base import DomainError, UTCDateTimeFilter, validated

from . import bulk, services
from .api_serializers import (
    BulkResultSerializer,
    BulkSerializer,
    CountSerializer,
    MailingListSerializer,
    NewSubscriberSerializer,
    NewSubscriptionSerializer,
    ProfileSerializer,
    ReasonSerializer,
    SegmentSerializer,
    SubscriberSerializer,
    SubscriptionSerializer,
    SuppressionSerializer,
    TagNamesSerializer,
    TagSerializer,
    UnsubscribeResultSerializer,
    UnsubscribeSerializer,
)
from .models import MailingList, Segment, Subscriber, Subscription, Suppression, Tag
from .search import search_subscribers
from .segments import segment_queryset
from .validation import clean_tag

API_CONSENT = "Subscribed through the API by {who}."


def subscribe_through_api(request, mailing_list, data):
    """services.subscribe with the API's source and the consent record the caller relayed."""
    double = data.get("double_opt_in")
    return services.subscribe(
        mailing_list, data["email"], name=data.get("name", ""), attributes=data.get("attributes"),
        time_zone=data.get("time_zone", ""), source=Subscription.API, ip=data.get("consent_ip"),
        user_agent=data.get("consent_user_agent", ""), form=data.get("consent_form") or "API",
        consent_text=data.get("consent_text") or API_CONSENT.format(who=request.user.get_username()),
        confirmed=None if double is None else not double,
    )


# --- Lists ----------------------------------------------------------------------------------


class MailingListFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = MailingList
        fields = ["name", "opt_in", "is_archived"]


class MailingListViewSet(viewsets.ModelViewSet):
    """Mailing lists. Deleting a list deletes its subscriptions; subscribers on other lists stay."""

    queryset = MailingList.objects.all()
    serializer_class = MailingListSerializer
    filterset_class = MailingListFilter
    ordering_fields = ["id", "name", "created_at"]
    ordering = "id"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]


# --- Subscribers ------------------------------------------------------------------------------


class SubscriberFilter(django_filters.FilterSet):
    """Search as in the dashboard (lists.search.search_subscribers)."""

    q = django_filters.CharFilter(method="noop", help_text='Words match email or name; key:value matches an attribute.')
    list = django_filters.NumberFilter(method="noop", help_text="Only members of this list.")
    status = django_filters.ChoiceFilter(
        method="noop", choices=[(s, s) for s in ("unconfirmed", "confirmed", "unsubscribed", "active", "blocklisted")],
        help_text="With list: the subscription status there; without: active/blocklisted, or a subscription "
                  "status on any list.")
    tag = django_filters.NumberFilter(method="noop", help_text="Tag id.")
    segment = django_filters.NumberFilter(method="noop", help_text="Segment id.")
    created_after = UTCDateTimeFilter(method="noop")
    created_before = UTCDateTimeFilter(method="noop")
    flag = django_filters.ChoiceFilter(
        method="noop", choices=[(f, f) for f in ("role", "disposable", "no_mx", "any")],
        help_text="Only subscribers with this list-hygiene flag (role address, throwaway domain, no MX), or any.")

    class Meta:
        model = Subscriber
        fields = []

    def noop(self, queryset, name, value):
        return queryset

    def filter_queryset(self, queryset):
        data = self.form.cleaned_data
        segment = None
        if data.get("segment") is not None:
            segment = Segment.objects.filter(pk=data["segment"]).first()
            if segment is None:
                raise DomainError("segment", "There is no segment with this id.")
        try:
            found = search_subscribers(
                data.get("q") or "", mailing_list=data.get("list"), status=data.get("status") or None,
                tag=data.get("tag"), segment=segment, created_after=data.get("created_after"),
                created_before=data.get("created_before"), flag=data.get("flag") or None,
            )
        except ValueError as exc:  # a segment whose conditions no longer compile
            raise DomainError("segment", exc)
        return found.prefetch_related(*queryset._prefetch_related_lookups)


@extend_schema_view(
    create=extend_schema(request=NewSubscriberSerializer, responses={201: SubscriberSerializer}),
    partial_update=extend_schema(request=ProfileSerializer, responses=SubscriberSerializer),
)
class SubscriberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Subscribers. A subscriber is created by subscribing them to at least one list."""

    queryset = Subscriber.objects.prefetch_related("tags", "subscriptions")
    serializer_class = SubscriberSerializer
    filterset_class = SubscriberFilter
    ordering_fields = ["id", "created_at", "email"]
    ordering = "-id"
    action_roles = {"export": "editor"}
    throttle_scope = None  # the bulk action has its own (autoresponder.api_base.TokenThrottle)

    def create(self, request):
        data = validated(NewSubscriberSerializer, request.data)
        with transaction.atomic():
            for mailing_list in data["lists"]:
                subscription = subscribe_through_api(request, mailing_list, data)
            if data.get("tags"):
                services.tag(subscription.subscriber, *data["tags"])
        return Response(self._shown(subscription.subscriber_id), status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        subscriber = self.get_object()
        services.update_subscriber(subscriber, **validated(ProfileSerializer, request.data))
        return Response(self._shown(subscriber.pk))

    def destroy(self, request, pk=None):
        services.delete_subscriber(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=TagNamesSerializer, responses=SubscriberSerializer)
    @action(detail=True, methods=["post"])
    def tag(self, request, pk=None):
        """Add tags by name (created when new)."""
        subscriber = self.get_object()
        services.tag(subscriber, *validated(TagNamesSerializer, request.data)["tags"])
        return Response(self._shown(subscriber.pk))

    @extend_schema(request=TagNamesSerializer, responses=SubscriberSerializer)
    @action(detail=True, methods=["post"])
    def untag(self, request, pk=None):
        """Remove tags by name; tags the subscriber does not carry are ignored."""
        subscriber = self.get_object()
        services.untag(subscriber, *validated(TagNamesSerializer, request.data)["tags"])
        return Response(self._shown(subscriber.pk))

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        """GDPR access request: everything held about the subscriber."""
        return Response(services.export_subscriber(self.get_object()))

    @extend_schema(request=None, responses=SubscriberSerializer)
    @action(detail=True, methods=["post"])
    def wipe(self, request, pk=None):
        """GDPR erasure: personal data removed, anonymous statistics kept; the address cannot be
        added back by an import or the API, only by its owner signing up again."""
        subscriber = services.wipe_subscriber(self.get_object())
        return Response(self._shown(subscriber.pk))

    @extend_schema(request=BulkSerializer, responses=BulkResultSerializer)
    @action(detail=False, methods=["post"], throttle_scope="bulk")
    def bulk(self, request):
        """Add or update up to 10,000 subscribers on one list in one call, set-based. Invalid or
        skipped items are listed with their index and reason; the others still go in."""
        data = validated(BulkSerializer, request.data)
        try:
            result = bulk.upsert_subscribers(data["list"], data["subscribers"], mode=data["mode"],
                                             confirmed=data["confirmed"], tags=data.get("tags", ()), user=request.user)
        except ValueError as exc:
            raise DomainError(getattr(exc, "field", "subscribers"), getattr(exc, "message", exc))
        return Response(BulkResultSerializer(result).data)

    def _shown(self, pk):
        return SubscriberSerializer(self.get_queryset().get(pk=pk)).data


# --- Subscriptions --------------------------------------------------------------------------------


class SubscriptionFilter(django_filters.FilterSet):
    list = django_filters.NumberFilter(field_name="mailing_list_id")
    subscriber = django_filters.NumberFilter(field_name="subscriber_id")

    class Meta:
        model = Subscription
        fields = ["list", "subscriber", "status", "source"]


@extend_schema_view(create=extend_schema(request=NewSubscriptionSerializer, responses={201: SubscriptionSerializer}))
class SubscriptionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Subscriptions: a subscriber's membership of a list, with its status and consent record."""

    queryset = Subscription.objects.select_related("subscriber")
    serializer_class = SubscriptionSerializer
    filterset_class = SubscriptionFilter
    ordering_fields = ["id", "created_at", "updated_at"]
    ordering = "-id"

    def create(self, request):
        """Subscribe an address to a list, with or without double opt-in (the list's own setting by default)."""
        data = validated(NewSubscriptionSerializer, request.data)
        subscription = subscribe_through_api(request, data["list"], data)
        return Response(SubscriptionSerializer(subscription).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def confirm(self, request, pk=None):
        """Confirm an unconfirmed subscription (as the double opt-in link does). Idempotent; an
        unsubscribed subscription stays unsubscribed."""
        return Response(SubscriptionSerializer(services.confirm(self.get_object())).data)

    @extend_schema(request=ReasonSerializer, responses=SubscriptionSerializer)
    @action(detail=True, methods=["post"])
    def unsubscribe(self, request, pk=None):
        subscription = self.get_object()
        reason = validated(ReasonSerializer, request.data)["reason"]
        services.unsubscribe(subscription.subscriber, subscription.mailing_list,
                             reason=reason or "Unsubscribed through the API")
        subscription.refresh_from_db()
        return Response(SubscriptionSerializer(subscription).data)


# --- Tags, segments, suppressions ------------------------------------------------------------------


class TagViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.DestroyModelMixin,
                 mixins.CreateModelMixin, viewsets.GenericViewSet):
    queryset = Tag.objects.all()
    serializer_class = TagSerializer
    filterset_fields = {"name": ["exact", "icontains"]}
    ordering_fields = ["id", "name"]
    ordering = "id"

    def perform_create(self, serializer):
        name = clean_tag(serializer.validated_data["name"])
        if Tag.objects.filter(name=name).exists():
            raise DomainError("name", "A tag with this name exists already.")
        serializer.save(name=name)


class SegmentViewSet(viewsets.ModelViewSet):
    """Saved filters over subscribers, usable as a broadcast's or a sequence's audience."""

    queryset = Segment.objects.all()
    serializer_class = SegmentSerializer
    filterset_fields = {"name": ["exact", "icontains"]}
    ordering_fields = ["id", "name"]
    ordering = "id"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    @extend_schema(responses=CountSerializer)
    @action(detail=True, methods=["get"])
    def count(self, request, pk=None):
        """How many subscribers the segment matches now."""
        return Response({"count": segment_queryset(self.get_object()).count()})


class SuppressionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin,
                         mixins.DestroyModelMixin, viewsets.GenericViewSet):
    """Addresses never mailed again. Creating one that exists returns it unchanged."""

    queryset = Suppression.objects.all()
    serializer_class = SuppressionSerializer
    filterset_fields = {"email": ["exact", "icontains"], "reason": ["exact"]}
    ordering_fields = ["id", "created_at", "email"]
    ordering = "-id"

    def create(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        existed = Suppression.objects.filter(email=data["email"].strip().lower()).exists()
        suppression = services.suppress(data["email"], reason=data["reason"], detail=data.get("detail", ""))
        code = status.HTTP_200_OK if existed else status.HTTP_201_CREATED
        return Response(SuppressionSerializer(suppression).data, status=code)

    def perform_destroy(self, instance):
        services.unsuppress(instance.email)


# --- The unsubscribe endpoint ----------------------------------------------------------------------


class UnsubscribeView(APIView):
    """For systems that learned someone wants out: the same effect as the one-click link in a mail."""

    @extend_schema(request=UnsubscribeSerializer, responses=UnsubscribeResultSerializer)
    def post(self, request):
        """Unsubscribe an address from one list, or from every list. Idempotent; an unknown address
        is answered with found: false and changes nothing."""
        data = validated(UnsubscribeSerializer, request.data)
        subscriber = services.find_subscriber(data["email"])
        changed = 0
        if subscriber is not None:
            changed = services.unsubscribe(subscriber, data["list"],
                                           reason=data["reason"] or "Unsubscribed through the API")
        return Response({"email": data["email"].strip(), "found": subscriber is not None, "unsubscribed": changed})

