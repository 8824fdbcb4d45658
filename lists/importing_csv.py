"""
Reading a CSV file for an import: its encoding and delimiter, its header mapped
to subscriber fields, and every row checked as it streams past, so memory stays
flat whatever the size of the file.

The checks are those of lists.validation (what the signup form, the dashboard
and the API accept), written for speed: a common address is checked with one
regular expression (a strict subset of what Django's validator accepts) and only
the rest go through lists.validation.normalize_email.
"""

import codecs
import csv
import io
import itertools
import json
import operator
import re
from dataclasses import dataclass

from .lookups import ATTRIBUTE_KEY
from .validation import (
    MAX_ATTRIBUTE_VALUE,
    MAX_ATTRIBUTES,
    MAX_ATTRIBUTES_JSON,
    MAX_EMAIL,
    MAX_NAME,
    InvalidSubscriber,
    clean_time_zone,
    normalize_email,
    time_zone_names,
)

SNIFF_BYTES = 64 * 1024
DELIMITERS = {",": "comma", ";": "semicolon", "\t": "tab"}
TARGETS = ("email", "name", "time_zone")
ATTRIBUTE_PREFIX = "attributes."
BINARY_SIGNATURES = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0", b"%PDF", b"\x1f\x8b")
BINARY_MESSAGE = (
    "This is not a CSV file (it looks like a spreadsheet or another binary file). In your spreadsheet "
    "choose File › Save as (or Download) › CSV, then upload that file."
)
LATIN1_WARNING = (
    "This file is not UTF-8, so it was read as Latin-1 (Western European). If names look wrong below, "
    "save it from your spreadsheet as “CSV UTF-8” and upload it again."
)
# Headers recognised without help, compared without case, spaces or punctuation.
ALIASES = {
    "email": "email", "emailaddress": "email", "mail": "email", "emailadresse": "email", "courriel": "email",
    "name": "name", "fullname": "name", "firstname": "name", "lastname": "name", "givenname": "name",
    "surname": "name", "familyname": "name", "first": "name", "last": "name",
    "timezone": "time_zone", "tz": "time_zone",
}
FULL_NAME = {"name", "fullname"}

_ATOM = r"[-!#$%&'*+/=?^_`{}|~0-9A-Za-z]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
FAST_EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}\Z")
# Control characters (a tab is folded to a space instead) and undecodable bytes (see RowReader).
BAD_CHARACTER = re.compile("[\x00-\x08\x0a-\x1f\x7f\udc80-\udcff]")
# What RowReader's quick check leaves to the full one: BAD_CHARACTER, a tab (folded to a space there) and a
# backslash (so that a quickly checked row needs no escaping in COPY's text format).
QUICK_REFUSED = re.compile("[\x00-\x1f\x7f\\\\\udc80-\udcff]")


class CSVFileError(ValueError):
    """A file that cannot be imported at all; the message says what to do."""


@dataclass
class Sniffed:
    encoding: str  # utf-8, utf-8-sig, utf-16 or latin-1
    delimiter: str
    header: list
    sample: list  # the first data rows, for the mapping page
    warning: str = ""

    @property
    def delimiter_name(self):
        return DELIMITERS[self.delimiter]


def sniff(path, *, sample_rows=5):
    """Encoding, delimiter, header and a sample of `path`; raises CSVFileError."""
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
        complete = not f.read(1)
    if not head.strip():
        raise CSVFileError("The file is empty. Upload a CSV file whose first row names the columns.")
    encoding, warning = detect_encoding(head)
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(head)
    if not complete and "\n" in text:
        text = text[: text.rindex("\n") + 1]  # drop the line the sample cut in two
    delimiter = detect_delimiter(text)
    rows = [r for r in itertools.islice(csv.reader(io.StringIO(text), delimiter=delimiter), 200) if r]
    if not rows:
        raise CSVFileError("The file has no rows. Upload a CSV file whose first row names the columns.")
    return Sniffed(encoding, delimiter, clean_header(rows[0]), rows[1 : sample_rows + 1], warning)


def detect_encoding(head):
    """(encoding, warning) from the first bytes; raises CSVFileError for binary files."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", ""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", ""  # Excel's "Unicode text"
    if head.startswith(BINARY_SIGNATURES) or b"\x00" in head:
        raise CSVFileError(BINARY_MESSAGE)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "latin-1", LATIN1_WARNING
    return "utf-8", ""


def detect_delimiter(text):
    """The most frequent of , ; and tab in the first line (a comma when none appears)."""
    first = text.split("\n", 1)[0]
    counts = {d: first.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def clean_header(cells):
    header = [cell.strip().lstrip("\ufeff") or f"column {n}" for n, cell in enumerate(cells, 1)]
    seen = set()
    for name in header:
        if name in seen:
            raise CSVFileError(
                f"Two columns are called “{name}”. Give every column a different name in the first row "
                "and upload again."
            )
        seen.add(name)
    return header


# --- Mapping ---------------------------------------------------------------------------------


def _normal(name):
    return re.sub(r"[^a-z0-9]", "", name.lower())


def attribute_key(column):
    """A column name as an attribute key: “Sign-up Source” → sign-up_source ('' when nothing is left)."""
    return re.sub(r"[^a-z0-9_.-]+", "_", column.lower()).strip("_.-")[:100]


def auto_mapping(header):
    """{column: target} guessing email, name and time zone; other columns become attributes.

    Several columns mapped to name (first name, last name) are joined with a space,
    unless a full-name column exists, which then wins.
    """
    normals = [_normal(c) for c in header]
    has_full_name = any(n in FULL_NAME for n in normals)
    mapping, taken, keys = {}, set(), set()
    for column, normal in zip(header, normals):
        target = ALIASES.get(normal)
        if target == "name" and has_full_name and normal not in FULL_NAME:
            target = None
        if target in ("email", "time_zone") and target in taken:
            target = None
        if target is None:
            target = _free_attribute(attribute_key(column), keys)
        taken.add(target)
        mapping[column] = target
    return mapping


def _free_attribute(key, keys):
    if not key:
        return ""
    candidate, n = key, 2
    while candidate in keys:
        candidate, n = f"{key}_{n}", n + 1
    keys.add(candidate)
    return ATTRIBUTE_PREFIX + candidate


def validate_mapping(header, mapping):
    """Plain error messages for a {column: target} mapping; [] when it is fine."""
    errors = [f"There is no column “{c}” in the file." for c in mapping if c not in header]
    targets = [t for c, t in mapping.items() if t and c in header]
    for target in targets:
        if target not in TARGETS and not _is_attribute(target):
            errors.append(f"“{target}” is not a subscriber field; use email, name, time_zone or attributes.<name>.")
    columns_for = {t: [c for c, v in mapping.items() if v == t] for t in set(targets)}
    if "email" not in columns_for:
        errors.append("Choose the column that holds the email addresses.")
    for target in ("email", "time_zone"):
        if len(columns_for.get(target, [])) > 1:
            errors.append(f"Only one column can be {target.replace('_', ' ')} (now: {', '.join(columns_for[target])}).")
    for target, columns in columns_for.items():
        if _is_attribute(target) and len(columns) > 1:
            errors.append(f"Columns {', '.join(columns)} all go to {target}; give each its own attribute name.")
    if sum(1 for t in targets if _is_attribute(t)) > MAX_ATTRIBUTES:
        errors.append(f"At most {MAX_ATTRIBUTES} columns can become attributes; ignore the others.")
    return errors


def _is_attribute(target):
    return target.startswith(ATTRIBUTE_PREFIX) and bool(ATTRIBUTE_KEY.match(target[len(ATTRIBUTE_PREFIX):]))


def parse_map_options(options):
    """["Column=field", …] (the command's --map) as a dict; raises CSVFileError."""
    mapping = {}
    for option in options or ():
        column, equals, target = option.partition("=")
        if not equals or not column.strip():
            raise CSVFileError(f"--map {option!r}: write it as COLUMN=FIELD, e.g. --map 'E-Mail=email'.")
        mapping[column.strip()] = target.strip()
    return mapping


# --- Rows ----------------------------------------------------------------------------------------


class RowReader:
    """Iterates over the valid rows of a CSV file as (line, email, name, time_zone, attribute values).

    Invalid rows are counted and collected in `.problems` as (line, email, reason);
    the caller drains that list as it goes. Blank lines are not rows. `line` is the
    file line on which the row starts (the header is line 1). Bytes that are not
    valid in the file's encoding are decoded as lone surrogates (errors=
    "surrogateescape") and the row is refused as badly encoded, instead of
    stopping the whole file.
    """

    def __init__(self, path, sniffed, mapping):
        self.sniffed, self.width = sniffed, len(sniffed.header)
        index = {column: n for n, column in enumerate(sniffed.header)}
        targets = [(index[c], t) for c, t in mapping.items() if t and c in index]
        self.email_at = next(n for n, t in targets if t == "email")
        self.name_at = [n for n, t in sorted(targets) if t == "name"]
        self.time_zone_at = next((n for n, t in targets if t == "time_zone"), None)
        attributes = [(n, t[len(ATTRIBUTE_PREFIX):]) for n, t in targets if _is_attribute(t)]
        self.attribute_columns = [n for n, _ in attributes]
        self.attribute_keys = [key for _, key in attributes]
        # JSON's share of the size besides the values ({"key": "", …}); a character may take 12 (\uXXXX\uXXXX).
        self.attributes_overhead = sum(len(key) + 8 for key in self.attribute_keys) + 2
        self.path, self.rows, self.invalid, self.problems = path, 0, 0, []
        self._raw, self._end = None, 0

    @property
    def bytes_read(self):
        if self._raw is None:
            return 0
        return self._raw.tell() if not self._raw.closed else self._end


    def __iter__(self):
        with open(self.path, "rb") as raw:
            self._raw = raw
            text = io.TextIOWrapper(raw, encoding=self.sniffed.encoding, errors="surrogateescape", newline="")
            reader = csv.reader(text, delimiter=self.sniffed.delimiter)
            try:
                yield from self._rows(reader)
            except UnicodeDecodeError as exc:  # only a broken UTF-16 file gets here
                raise CSVFileError(f"The file breaks off in the middle of a character ({exc.reason}).") from None
            self._end = raw.tell()

    def _rows(self, reader):
        next(reader, None)  # the header
        previous_end, quick = reader.line_num, self._quick_check()
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self._problem(previous_end + 1, "", f"unreadable row ({exc})")
                previous_end = reader.line_num
                continue
            line, previous_end = previous_end + 1, reader.line_num
            checked = quick(line, row)
            if checked is None:
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                checked = self.check(row)
                if isinstance(checked, str):
                    self.rows += 1
                    self._problem(line, _email_for_report(row, self.email_at), checked)
                    continue
                checked = (line, *checked)
            self.rows += 1
            yield checked

    def _quick_check(self):
        """check() for the common row, as one function with everything at hand: the right width, no tab,
        backslash or character check() refuses, an address FAST_EMAIL accepts, a known time zone (or
        none) and short values. It returns (line, *what check() would), or None: check() decides.

        The staging of a Postgres import waits for this Python, not for Postgres: reading the 1,000,000
        rows of bench-import into COPY text took 3.6 s of CPU with check() alone, 2.4 s with this first
        (tests/test_importing_csv.py holds that both answer alike)."""
        width, email_at, time_zone_at, name_at = self.width, self.email_at, self.time_zone_at, self.name_at
        special, fast_email, zones = QUICK_REFUSED.search, FAST_EMAIL.match, time_zone_names()
        one_name = name_at[0] if len(name_at) == 1 else None
        columns = self.attribute_columns
        if len(columns) > 1:
            pick = operator.itemgetter(*columns)
        else:  # itemgetter of one index returns the item, not a tuple
            pick = (lambda row: (row[columns[0]],)) if columns else (lambda row: ())
        short_values = min(MAX_ATTRIBUTE_VALUE, (MAX_ATTRIBUTES_JSON - self.attributes_overhead) // 12)

        def quick(line, row):
            joined = " ".join(row)
            if len(row) != width or special(joined):
                return None
            email = row[email_at].strip()
            if len(email) > MAX_EMAIL or not fast_email(email):
                return None
            if not email.islower():  # the domain is lower-cased (not the local part)
                at = email.rindex("@")
                email = email[:at] + email[at:].lower()
            if one_name is not None:
                name = row[one_name].strip()
            else:
                name = " ".join(part for part in (row[n].strip() for n in name_at) if part)
            time_zone = row[time_zone_at].strip() if time_zone_at is not None else ""
            if len(name) > MAX_NAME or (time_zone and time_zone not in zones):
                return None
            values = tuple(map(str.strip, pick(row)))
            if len(joined) > short_values and sum(map(len, values)) > short_values:
                return None
            return line, email, name, time_zone, values

        return quick

    def _problem(self, line, email, reason):
        self.invalid += 1
        self.problems.append((line, email, reason))

    def check(self, row):
        """(email, name, time_zone, attribute values) for a valid row, else the reason it is invalid."""
        try:
            return self._check(row)
        except _Invalid as exc:
            return str(exc)

    def _check(self, row):
        if len(row) != self.width:
            raise _Invalid(f"wrong number of columns: expected {self.width}, found {len(row)}")
        bad = BAD_CHARACTER.search(" ".join(row))
        if bad:
            raise _Invalid(_bad_character_reason(bad.group()))
        name = " ".join(part for part in (row[n].replace("\t", " ").strip() for n in self.name_at) if part)
        if len(name) > MAX_NAME:
            raise _Invalid(f"name too long (more than {MAX_NAME} characters)")
        time_zone = row[self.time_zone_at].strip() if self.time_zone_at is not None else ""
        return _email(row[self.email_at]), name, _time_zone(time_zone), self._attributes(row)

    def _attributes(self, row):
        """The attribute cells, trimmed, in the order of attribute_keys ("" for an empty cell)."""
        values = tuple(row[n].replace("\t", " ").strip() for n in self.attribute_columns)
        size = sum(map(len, values))
        if size > MAX_ATTRIBUTE_VALUE or size * 12 + self.attributes_overhead > MAX_ATTRIBUTES_JSON:
            self._check_attribute_sizes(values)  # rare: long values, checked exactly
        return values

    def _check_attribute_sizes(self, values):
        for key, value in zip(self.attribute_keys, values):
            if len(value) > MAX_ATTRIBUTE_VALUE:
                raise _Invalid(f"value of “{key}” too long (more than {MAX_ATTRIBUTE_VALUE} characters)")
        if len(json.dumps(self.attributes(values))) > MAX_ATTRIBUTES_JSON:  # as lists.validation measures
            raise _Invalid("attributes too large (more than 16 KB)")

    def attributes(self, values):
        """A row's attribute values as the dict a subscriber stores (empty cells left out)."""
        return {key: value for key, value in zip(self.attribute_keys, values) if value}


def check_fields(email, name, time_zone):
    """RowReader's checks for values that come without a CSV line (lists.bulk): (email, name, time_zone)
    as an import stores them, else the reason they are invalid (a str, as in the problem report)."""
    try:
        bad = BAD_CHARACTER.search(f"{email} {name} {time_zone}")
        if bad:
            raise _Invalid(_bad_character_reason(bad.group()))
        name = name.replace("\t", " ").strip()
        if len(name) > MAX_NAME:
            raise _Invalid(f"name too long (more than {MAX_NAME} characters)")
        return _email(email), name, _time_zone(time_zone.strip())
    except _Invalid as exc:
        return str(exc)


class _Invalid(Exception):
    """A row that cannot be imported; the message is the reason in the problem report."""


def _email(value):
    """The address as lists.validation.normalize_email leaves it; raises _Invalid."""
    value = value.replace("\t", " ").strip()
    if not value:
        raise _Invalid("no email address")
    if len(value) > MAX_EMAIL:
        raise _Invalid(f"email address too long (more than {MAX_EMAIL} characters)")
    if FAST_EMAIL.match(value):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    try:
        return normalize_email(value)
    except InvalidSubscriber:
        raise _Invalid("invalid email address") from None


def _time_zone(value):
    if value:
        try:
            clean_time_zone(value)
        except InvalidSubscriber:
            raise _Invalid(f"unknown time zone “{value[:64]}”") from None
    return value


def _bad_character_reason(char):
    if char in "\r\n":
        return "line break inside a field"
    if "\udc80" <= char <= "\udcff":
        return "bad encoding (bytes that are not valid UTF-8)"
    return "control character inside a field"


def _email_for_report(row, at):
    value = row[at] if at < len(row) else ""
    return BAD_CHARACTER.sub("?", value.strip())[:MAX_EMAIL]
