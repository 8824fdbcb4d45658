"""
The REST API's shared building blocks: who may call what (the dashboard's
roles), paging, per-token throttling and how domain errors become answers.

Roles work as in the dashboard (autoresponder.roles): reads need `read_role`
(viewer by default), writes `write_role` (editor by default); a view can name
a stronger role for one action in `action_roles` (a GDPR wipe, say). A token
acts as its user, so it carries that user's role, and losing the role takes
the token's rights with it at once. A user without a role (mallory) gets 403.

Errors: every domain error a service raises (lists' InvalidSubscriber, a
Django ValidationError from a model's clean(), a BroadcastError, …) becomes a
400 with the field it concerns, never a 500; unknown ids are 404.
"""

import hashlib
import time
from datetime import timezone as dt_timezone

import django_filters
from django import forms

from django.core.exceptions import ValidationError as DjangoValidationError
from django.forms.models import model_to_dict
from django.db.models import ProtectedError
from django.http import Http404
from django.utils import timezone
from rest_framework import exceptions, pagination, permissions, serializers, throttling
from rest_framework.settings import api_settings

from . import ratelimit
from .roles import has_role

NON_FIELD = api_settings.NON_FIELD_ERRORS_KEY


# --- Permissions -----------------------------------------------------------------------


def required_role(request, view):
    """The role this request needs on `view`."""
    action = getattr(view, "action", None)
    roles = getattr(view, "action_roles", {})
    if action in roles:
        return roles[action]
    if request.method in permissions.SAFE_METHODS:
        return getattr(view, "read_role", "viewer")
    return getattr(view, "write_role", "editor")


class RolePermission(permissions.BasePermission):
    """Signed in (token or session), and at least the role the view asks for this request."""

    message = "Your account does not have the role this needs; ask an owner to grant it."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        return has_role(request.user, required_role(request, view))


# --- Paging -------------------------------------------------------------------------------


class CursorPagination(pagination.CursorPagination):
    """Opaque cursors: stable under inserts and no COUNT over a million rows."""

    ordering = "-id"
    page_size_query_param = "page_size"
    max_page_size = 500


# --- Throttling ---------------------------------------------------------------------------

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate):
    """'300/min' -> (300, 60)."""
    count, _, period = rate.partition("/")
    return int(count), _PERIODS[period.strip()[0]]


class TokenThrottle(throttling.BaseThrottle):
    """Fixed-window limits per token (per user for a browser session), by scope.

    The scope is the view's `throttle_scope` when it sets one (the bulk upsert
    does), else "read" for GET/HEAD/OPTIONS and "write" for the rest; rates are
    REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]. Counted in the shared cache
    (autoresponder.ratelimit), so the limit holds across every web process.
    """

    def allow_request(self, request, view):
        scope = getattr(view, "throttle_scope", None)
        if scope is None:
            scope = "read" if request.method in permissions.SAFE_METHODS else "write"
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(scope)
        if not rate:
            return True
        limit, self.window = parse_rate(rate)
        return ratelimit.hit(f"api-{scope}", self.ident(request), limit=limit, window=self.window)

    def ident(self, request):
        key = getattr(request.auth, "key", None)
        if key:
            return "token:" + hashlib.sha256(key.encode()).hexdigest()
        if request.user and request.user.is_authenticated:
            return f"user:{request.user.pk}"
        return "ip:" + ratelimit.client_ip(request)

    def wait(self):
        return self.window - time.time() % self.window


# --- Errors -------------------------------------------------------------------------------


def field_errors(exc):
    """{field: [messages]} for a Django ValidationError."""
    if hasattr(exc, "error_dict"):
        return {NON_FIELD if k == "__all__" else k: [str(m) for m in v] for k, v in exc.message_dict.items()}
    return {NON_FIELD: [str(m) for m in exc.messages]}


class InUse(exceptions.APIException):
    status_code = 409
    default_detail = "This is still in use (by a broadcast, say); remove that use first."
    default_code = "in_use"


class DomainError(exceptions.ValidationError):
    """A 400 whose body names the field a service complained about."""

    def __init__(self, field, message):
        super().__init__({field or NON_FIELD: [str(message)]})


def exception_handler(exc, context):
    """DRF's handler, plus: Django ValidationError and services' errors as 400s."""
    # Imported here: rest_framework.views imports this module's RolePermission through the settings.
    from rest_framework.views import exception_handler as drf_exception_handler

    if isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(field_errors(exc))
    elif getattr(exc, "field", None) is not None and isinstance(exc, ValueError):
        exc = DomainError(exc.field, getattr(exc, "message", str(exc)))  # lists.validation.InvalidSubscriber
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found: there is nothing with this id.")
    elif isinstance(exc, ProtectedError):
        exc = InUse()
    return drf_exception_handler(exc, context)


# --- Serializer helpers -------------------------------------------------------------------


def validated(serializer_class, data):
    """`data` checked by `serializer_class`; raises the 400 with every field's errors."""
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictSerializerMixin:
    """Refuse fields the serializer does not know, so a typo is a 400 instead of silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class FormSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    """A ModelSerializer whose input is checked by the dashboard's Django form (Meta.form_class),
    so the API accepts exactly what the dashboard accepts and saves it the same way.

    `form_data(attrs)` turns the serializer's attributes into the form's data on top of the
    instance's current values (a PATCH changes only what it names); `form_kwargs()` adds
    constructor arguments. create() and update() save through form.save().
    """

    def form_kwargs(self):
        return {}

    def initial_form_data(self):
        """The instance's values; for a new object, the model's defaults (what a blank dashboard form shows)."""
        instance = self.instance if self.instance is not None else self.Meta.model()
        return model_to_dict(instance, fields=self.Meta.form_class._meta.fields)

    def form_data(self, attrs):
        data = self.initial_form_data()
        data.update({name: _form_value(value) for name, value in attrs.items()})
        return {name: value for name, value in data.items() if value is not None}

    def validate(self, attrs):
        self.form = self.Meta.form_class(self.form_data(attrs), instance=self.instance, **self.form_kwargs())
        if not self.form.is_valid():
            raise serializers.ValidationError(
                {NON_FIELD if k == "__all__" else k: [e["message"] for e in v]
                 for k, v in self.form.errors.get_json_data().items()}
            )
        return attrs

    def create(self, validated_data):
        return self.form.save()

    def update(self, instance, validated_data):
        return self.form.save()


def _form_value(value):
    """A serializer value as form data: model instances by primary key, lists element-wise."""
    if isinstance(value, (list, tuple)):
        return [_form_value(v) for v in value]
    if hasattr(value, "_meta") and hasattr(value, "pk"):
        return value.pk
    return value


# --- Schema -------------------------------------------------------------------------------

_DETAIL = {"type": "object", "properties": {"detail": {"type": "string"}}, "required": ["detail"]}
ERROR_RESPONSES = {
    "400": ("Invalid input: each field named with what to fix ({field: [messages]}).",
            {"type": "object", "additionalProperties": True}),
    "401": ("No token, or an unknown one.", _DETAIL),
    "403": ("The token's user lacks the role this needs (or a session request lacks its CSRF token).", _DETAIL),
    "404": ("Nothing with this id.", _DETAIL),
    "409": ("The object is not in a state that allows this, or is still in use.", _DETAIL),
    "429": ("Too many requests for this token; retry after the Retry-After header's seconds.", _DETAIL),
}


def document_errors(result, generator, request, public):
    """drf-spectacular post-processing hook: the error answers every operation may give, documented
    once here (spectacular documents only successes), so clients and schema tests know their shape."""
    for path in result.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            for code, (description, schema) in ERROR_RESPONSES.items():
                responses.setdefault(code, {"description": description,
                                            "content": {"application/json": {"schema": schema}}})
    return result


# --- Filters ------------------------------------------------------------------------------


class UTCDateTimeField(forms.DateTimeField):
    """An ISO 8601 time, converted to UTC: Postgres refuses offsets beyond ±15:59 (an API
    client may send +20:18), and times near year 1 or 9999 must not overflow."""

    def to_python(self, value):
        moment = django_filters.fields.IsoDateTimeField().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(dt_timezone.utc) if timezone.is_aware(moment) else timezone.make_aware(moment)
        except (OverflowError, ValueError):
            raise forms.ValidationError("This time is out of range.", code="invalid") from None


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCDateTimeField
