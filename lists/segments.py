"""
Segments: saved filters over subscribers (lists.models.Segment), usable as a
send target.

`Segment.conditions` is a list of `{"field", "op", "value"}` objects, combined
with `Segment.match` ("all": every condition holds; "any": at least one does):

| field              | ops                                                         | value              |
|--------------------|-------------------------------------------------------------|--------------------|
| email, name        | is, is_not, contains, not_contains, starts_with, ends_with  | text               |
| name               | also is_empty, is_not_empty                                 | (none)             |
| attributes.<key>   | is, is_not, contains, not_contains, exists, not_exists,     | text; a number for |
|                    | gt, lt                                                      | gt / lt            |
| list               | subscribed (confirmed or unconfirmed), confirmed,           | list id            |
|                    | unconfirmed, unsubscribed, not_subscribed                   |                    |
| tag                | has, has_not                                                | tag id             |
| created_at         | older_than_days, newer_than_days                            | whole days         |

Text comparisons ignore case. `attributes.<key> is_not` and `not_contains`
also match subscribers without the attribute; `gt`/`lt` only match numeric values.

A segment compiles to ONE query (conditions_q returns a Q object over
Subscriber; memberships and tags are EXISTS subqueries), because the sending
engine uses segment_queryset(segment) as a subquery of its INSERT … SELECT.
Compiling never touches the database; validate_conditions does (it checks that
lists and tags exist).

Extension point. `lists` knows nothing of campaigns, yet segments want
activity conditions ("opened within 30 days"). Another app adds fields from
its AppConfig.ready():

    from lists import segments

    segments.register_condition(
        "opened_within_days", label="Opened a message in the last N days",
        ops={"yes": "did", "no": "did not"}, kind="days", clean=segments.clean_days,
        compile=lambda op, days, key: ...a Q over Subscriber (e.g. an Exists on events)...,
    )

`compile(op, value, key)` receives the cleaned value and must return a Q that
adds no rows (use Exists, not joins) so that "any" segments stay correct;
`clean(op, value)` returns the cleaned value or raises ValueError with a plain
message; `kind` picks the value input in the dashboard (text, number, days,
list, tag, none).
"""

from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

from django.db.models import Exists, FloatField, OuterRef, Q, Value
from django.db.models.functions import Coalesce, Lower
from django.db.models.lookups import Exact, GreaterThan, LessThan
from django.utils import timezone

from .lookups import ATTRIBUTE_KEY, ILike, NumberOrNull, attribute_equals, attribute_text, like_pattern
from .models import MailingList, Segment, Subscriber, Subscription, Tag

MAX_CONDITIONS = 50
MAX_VALUE = 1000
ATTRIBUTE_PREFIX = "attributes."


class SegmentError(ValueError):
    """Conditions that cannot be compiled; `.messages` lists what is wrong."""

    def __init__(self, messages):
        super().__init__(" ".join(messages))
        self.messages = messages


@dataclass(frozen=True)
class ConditionField:
    name: str
    label: str
    ops: dict  # op -> label, in display order
    compile: Callable  # (op, cleaned value, key) -> Q over Subscriber
    clean: Callable  # (op, raw value) -> cleaned value; raises ValueError
    kind: str = "text"


FIELDS = {}


def register_condition(name, *, label, ops, compile, clean, kind="text"):
    """Make a new condition field available to segments (see the module docstring)."""
    FIELDS[name] = ConditionField(name, label, dict(ops), compile, clean, kind)


# --- Value cleaners (also for fields other apps register) -------------------------------


def clean_text(op, value):
    if op in NO_VALUE_OPS:
        return None
    text = "" if value is None else str(value).strip()
    if not text:
        raise ValueError("Enter a value to compare with.")
    if len(text) > MAX_VALUE:
        raise ValueError(f"The value is too long (at most {MAX_VALUE} characters).")
    return text


def clean_number(op, value):
    if op not in ("gt", "lt"):
        return clean_text(op, value)
    try:
        number = float(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError(f"“{value}” is not a number; “greater than” and “less than” compare numbers.")
    return int(number) if number.is_integer() else number


def clean_days(op, value):
    try:
        days = int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError("Enter a whole number of days, such as 30.")
    if not 0 <= days <= 36500:
        raise ValueError("Enter a number of days between 0 and 36500.")
    return days


def clean_id(op, value):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        raise ValueError("Choose one from the list.")


# --- Compilers ------------------------------------------------------------------------------

NO_VALUE_OPS = {"is_empty", "is_not_empty", "exists", "not_exists"}
NEGATED = {"is_not": "is", "not_contains": "contains", "is_not_empty": "is_empty", "not_exists": "exists",
           "has_not": "has", "not_subscribed": "subscribed"}
TEXT_OPS = {"is": "is", "is_not": "is not", "contains": "contains", "not_contains": "does not contain",
            "starts_with": "starts with", "ends_with": "ends with"}


def _negatable(compile_positive):
    """Compile `op` through its positive twin, negated for the NEGATED ops."""

    def compile(op, value, key):
        if op in NEGATED:
            return ~compile_positive(NEGATED[op], value, key)
        return compile_positive(op, value, key)

    return compile


def _text_field(column):
    def positive(op, value, key):
        if op == "is":
            return Q(Exact(Lower(column), value.lower()))  # on email: the lower(email) unique index
        if op == "is_empty":
            return Q(**{column: ""})
        start, end = {"contains": ("%", "%"), "starts_with": ("", "%"), "ends_with": ("%", "")}[op]
        return Q(**{f"{column}__ilike": like_pattern(value, start=start, end=end)})

    return _negatable(positive)


def _attribute(op, value, key):
    if op == "is":
        return attribute_equals(key, value)
    if op == "exists":
        return Q(attributes__has_key=key)
    if op == "contains":  # coalesce: "does not contain" also matches subscribers without the attribute
        return Q(ILike(Coalesce(attribute_text(key), Value("")), like_pattern(value)))
    number = NumberOrNull(attribute_text(key), output_field=FloatField())
    return Q(GreaterThan(number, value)) if op == "gt" else Q(LessThan(number, value))


LIST_STATUSES = {"subscribed": [Subscription.CONFIRMED, Subscription.UNCONFIRMED],
                 "confirmed": [Subscription.CONFIRMED], "unconfirmed": [Subscription.UNCONFIRMED],
                 "unsubscribed": [Subscription.UNSUBSCRIBED]}


def _membership(op, list_id, key):
    subscriptions = Subscription.objects.filter(
        subscriber=OuterRef("pk"), mailing_list_id=list_id, status__in=LIST_STATUSES[op]
    )
    return Q(Exists(subscriptions))


def _tagged(op, tag_id, key):
    through = Subscriber.tags.through
    return Q(Exists(through.objects.filter(subscriber_id=OuterRef("pk"), tag_id=tag_id)))


def _created(op, days, key):
    moment = timezone.now() - timedelta(days=days)
    return Q(created_at__lt=moment) if op == "older_than_days" else Q(created_at__gte=moment)


register_condition("email", label="Email address", ops=TEXT_OPS, compile=_text_field("email"), clean=clean_text)
register_condition("name", label="Name", ops={**TEXT_OPS, "is_empty": "is empty", "is_not_empty": "is not empty"},
                   compile=_text_field("name"), clean=clean_text)
register_condition(
    "attributes", label="Attribute", clean=clean_number, compile=_negatable(_attribute),
    ops={"is": "is", "is_not": "is not", "contains": "contains", "not_contains": "does not contain",
         "exists": "is set", "not_exists": "is not set", "gt": "is greater than", "lt": "is less than"},
)
register_condition(
    "list", label="List", kind="list", clean=clean_id, compile=_negatable(_membership),
    ops={"subscribed": "is subscribed to", "confirmed": "is confirmed on", "unconfirmed": "is unconfirmed on",
         "unsubscribed": "unsubscribed from", "not_subscribed": "is not subscribed to"},
)
register_condition("tag", label="Tag", kind="tag", clean=clean_id, compile=_negatable(_tagged),
                   ops={"has": "has", "has_not": "does not have"})
register_condition("created_at", label="Added", kind="days", clean=clean_days, compile=_created,
                   ops={"newer_than_days": "less than N days ago", "older_than_days": "more than N days ago"})


# --- Parsing and validation ------------------------------------------------------------------


def field_for(name):
    """(ConditionField, attribute key or None) for a condition's `field`; raises ValueError."""
    if not isinstance(name, str) or not name:
        raise ValueError("Choose a field.")
    if name.startswith(ATTRIBUTE_PREFIX):
        key = name[len(ATTRIBUTE_PREFIX):]
        if not ATTRIBUTE_KEY.match(key):
            raise ValueError("Name the attribute with letters, digits, _ . or - (for example attributes.plan).")
        return FIELDS["attributes"], key
    if name not in FIELDS or name == "attributes":
        raise ValueError(f"“{name}” is not a field segments can filter on.")
    return FIELDS[name], None


def parse_condition(condition):
    """(field, key, op, cleaned value) for one condition; raises ValueError with a plain message."""
    if not isinstance(condition, dict):
        raise ValueError("Each condition needs a field, an operator and a value.")
    field, key = field_for(condition.get("field"))
    op = condition.get("op")
    if op not in field.ops:
        choices = ", ".join(label for label in field.ops.values())
        raise ValueError(f"Choose how to compare {field.label.lower()}: {choices}.")
    return field, key, op, field.clean(op, condition.get("value"))


def _general_errors(conditions, match):
    if match not in (Segment.ALL, Segment.ANY):
        return ["Match must be “all” or “any”."]
    if not isinstance(conditions, list):
        return ["Conditions must be a list."]
    if not conditions:
        return ["Add at least one condition."]
    if len(conditions) > MAX_CONDITIONS:
        return [f"A segment can have at most {MAX_CONDITIONS} conditions."]
    return []


def condition_errors(conditions, match=Segment.ALL):
    """(general errors, one list of errors per condition); looks lists and tags up."""
    general = _general_errors(conditions, match)
    if general and not isinstance(conditions, list):
        return general, []
    per_condition, wanted = [], {"list": set(), "tag": set()}
    for condition in conditions:
        try:
            field, _, _, value = parse_condition(condition)
        except ValueError as exc:
            per_condition.append([str(exc)])
            continue
        per_condition.append([])
        if field.kind in wanted:
            wanted[field.kind].add(value)
    _check_existing(conditions, per_condition, wanted)
    return general, per_condition


def _check_existing(conditions, per_condition, wanted):
    found = {
        "list": set(MailingList.objects.filter(pk__in=wanted["list"]).values_list("pk", flat=True)),
        "tag": set(Tag.objects.filter(pk__in=wanted["tag"]).values_list("pk", flat=True)),
    }
    for condition, errors in zip(conditions, per_condition):
        if errors:
            continue
        field, _, _, value = parse_condition(condition)
        if field.kind in found and value not in found[field.kind]:
            errors.append(f"There is no {field.kind} with id {value} any more; choose another.")


def validate_conditions(conditions, match=Segment.ALL):
    """Plain error messages for a segment's conditions; [] when they are fine."""
    general, per_condition = condition_errors(conditions, match)
    return general + [f"Condition {n}: {e}" for n, errors in enumerate(per_condition, 1) for e in errors]


def clean_conditions(conditions):
    """The conditions with cleaned values (ids and numbers as numbers), ready to save; assumes they validate."""
    cleaned = []
    for condition in conditions:
        _, _, op, value = parse_condition(condition)
        cleaned.append({"field": condition["field"], "op": op, "value": value})
    return cleaned


# --- Compiling -----------------------------------------------------------------------------


def conditions_q(conditions, match=Segment.ALL):
    """The conditions as one Q over Subscriber; raises SegmentError when they do not parse."""
    general = _general_errors(conditions, match)
    if general:
        raise SegmentError(general)
    parts, problems = [], []
    for n, condition in enumerate(conditions, 1):
        try:
            field, key, op, value = parse_condition(condition)
        except ValueError as exc:
            problems.append(f"Condition {n}: {exc}")
            continue
        parts.append(field.compile(op, value, key))
    if problems:
        raise SegmentError(problems)
    combined = parts[0]
    for part in parts[1:]:
        combined = combined & part if match == Segment.ALL else combined | part
    return combined


def subscribers_matching(conditions, match=Segment.ALL):
    """Subscribers matching the conditions: one lazy QuerySet, one SQL query."""
    return Subscriber.objects.filter(conditions_q(conditions, match))


def segment_queryset(segment):
    """The segment's subscribers, for previews, exports and the sending engine's INSERT … SELECT."""
    return subscribers_matching(segment.conditions, segment.match)


def describe(condition, *, lists=None, tags=None):
    """A condition in words, e.g. “Email address contains gmail”; `lists`/`tags` map ids to names."""
    try:
        field, key, op, value = parse_condition(condition)
    except ValueError:
        return "(an invalid condition)"
    subject = f"Attribute “{key}”" if key else field.label
    names = {"list": lists or {}, "tag": tags or {}}.get(field.kind)
    if names is not None:
        value = names.get(value, f"#{value}")
    if value is None:
        return f"{subject} {field.ops[op]}"
    if field.kind == "days":
        return f"{subject} {field.ops[op]}".replace(" N ", f" {value} ")
    return f"{subject} {field.ops[op]} {value}"
