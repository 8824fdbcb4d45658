"""
Checks for everything that describes a subscriber, shared by every entry point
(signup pages, dashboard, API, import). Bad input raises InvalidSubscriber with
the field it concerns and a message a person can act on; nothing is saved.

Line breaks are refused in every field: these values end up in mail headers
(the To: name, a subject personalised with the name) and in CSV exports, where a
CR/LF is an injection, never data.
"""

import ipaddress
import json
import math
import re
import zoneinfo
from functools import lru_cache

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

MAX_EMAIL = 254  # RFC 5321 path limit
MAX_NAME = 200
MAX_ATTRIBUTES = 100
MAX_ATTRIBUTE_KEY = 100
MAX_ATTRIBUTE_VALUE = 1000
MAX_ATTRIBUTES_JSON = 16 * 1024
MAX_ATTRIBUTE_DEPTH = 4  # levels of lists and objects inside one attribute value
MAX_TAG = 100
# C0 control characters (CR, LF, NUL, …); a tab is tolerated and folded to a space.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


class InvalidSubscriber(ValueError):
    """Input that cannot describe a subscriber. `.field` names the input, the message says what to fix."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field
        self.message = message


def _text(field, value, *, max_length, label):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidSubscriber(field, f"The {label} must be text.")
    if _CONTROL.search(value):
        raise InvalidSubscriber(field, f"The {label} cannot contain line breaks or control characters.")
    value = value.replace("\t", " ").strip()
    if len(value) > max_length:
        raise InvalidSubscriber(field, f"The {label} is too long (at most {max_length} characters).")
    return value


def normalize_email(value):
    """The address, trimmed, with its domain lower-cased; raises InvalidSubscriber."""
    value = _text("email", value, max_length=10_000, label="email address")
    if not value:
        raise InvalidSubscriber("email", "Enter an email address.")
    if len(value) > MAX_EMAIL:
        raise InvalidSubscriber("email", f"This email address is too long (at most {MAX_EMAIL} characters).")
    try:
        validate_email(value)
    except ValidationError:
        raise InvalidSubscriber("email", "Enter a valid email address, such as name@example.com.")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def suppressible_address(value):
    """Lower-cased address for the suppression list: one line, has an @, fits the column."""
    value = _text("email", value, max_length=MAX_EMAIL, label="email address").lower()
    if "@" not in value.strip("@"):
        raise InvalidSubscriber("email", "Enter a valid email address, such as name@example.com.")
    return value


def clean_name(value):
    return _text("name", value, max_length=MAX_NAME, label="name")


def clean_tag(value):
    name = _text("tags", value, max_length=MAX_TAG, label="tag")
    if not name:
        raise InvalidSubscriber("tags", "A tag cannot be empty.")
    return name


@lru_cache(maxsize=1)
def time_zone_names():
    """The IANA time zone names clean_time_zone accepts (read once per process)."""
    return frozenset(zoneinfo.available_timezones())


def clean_time_zone(value):
    value = _text("time_zone", value, max_length=64, label="time zone")
    if value and value not in time_zone_names():
        raise InvalidSubscriber("time_zone", f"Unknown time zone {value!r}; use a name such as Europe/Berlin or UTC.")
    return value


def _attribute_value(key, value, depth=0):
    if isinstance(value, str):
        return _text("attributes", value, max_length=MAX_ATTRIBUTE_VALUE, label=f"value of {key!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidSubscriber("attributes", f"The value of {key!r} must be a finite number.")
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, dict)) and depth == MAX_ATTRIBUTE_DEPTH:
        raise InvalidSubscriber("attributes", f"The value of {key!r} nests lists and objects more than "
                                              f"{MAX_ATTRIBUTE_DEPTH} levels deep.")
    if isinstance(value, list):
        return [_attribute_value(key, item, depth + 1) for item in value]
    if isinstance(value, dict):
        return {_text("attributes", name, max_length=MAX_ATTRIBUTE_KEY, label=f"name inside {key!r}"):
                _attribute_value(key, item, depth + 1) for name, item in value.items()}
    raise InvalidSubscriber("attributes", f"The value of {key!r} must be text, a number, true/false, null, "
                                          "a list or an object.")


def clean_attributes(value):
    """A dict of JSON values (text, numbers, true/false, null, lists and objects, nested at most
    MAX_ATTRIBUTE_DEPTH levels), limited in size; kept with their types."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidSubscriber("attributes", "Attributes must be a set of names and values.")
    if len(value) > MAX_ATTRIBUTES:
        raise InvalidSubscriber("attributes", f"At most {MAX_ATTRIBUTES} attributes are allowed.")
    cleaned = {}
    for key, item in value.items():
        key = _text("attributes", key, max_length=MAX_ATTRIBUTE_KEY, label="attribute name")
        if not key:
            raise InvalidSubscriber("attributes", "An attribute name cannot be empty.")
        cleaned[key] = _attribute_value(key, item)
    if len(json.dumps(cleaned)) > MAX_ATTRIBUTES_JSON:
        raise InvalidSubscriber("attributes", "The attributes are too large (at most 16 KB).")
    return cleaned


def clean_ip(value):
    """A valid IP address string or None: consent records keep what the request said, nothing else."""
    try:
        return str(ipaddress.ip_address(value)) if value else None
    except ValueError:
        return None


def one_line(value, max_length):
    """Free text from a trusted caller (a user agent, a reason), folded to one line and cut to fit."""
    return " ".join(str(value or "").split())[:max_length]
