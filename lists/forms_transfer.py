"""Forms of the import, export and segment pages (lists.views_transfer)."""

from django import forms

from . import importing, segments
from .importing_csv import ATTRIBUTE_PREFIX, attribute_key
from .models import ImportJob, Segment
from .validation import InvalidSubscriber

TARGET_CHOICES = [("", "Ignore this column"), ("email", "Email address"), ("name", "Name"),
                  ("time_zone", "Time zone"), ("attribute", "Attribute")]


class ImportForm(forms.Form):
    file = forms.FileField(label="CSV file", help_text="The first row must name the columns. Comma, semicolon "
                           "or tab separated; save spreadsheets as “CSV UTF-8”.")
    mode = forms.ChoiceField(label="What to do", choices=ImportJob.MODE_CHOICES, initial=ImportJob.ADD,
                             widget=forms.RadioSelect)
    confirmed = forms.BooleanField(
        required=False, label="These people agreed to receive mail from this list: subscribe them at once",
        help_text="Without this, new subscribers wait, unconfirmed, and each gets a confirmation mail.",
    )
    tags = forms.CharField(required=False, max_length=1000, label="Tags",
                           help_text="Comma-separated; added to every imported subscriber.")
    check_mx = forms.BooleanField(
        required=False, label="Check that each domain has a mail server",
        help_text="Looks up each domain once (answers are kept for a day); addresses at domains without a mail "
        "server are flagged. Adds up to two minutes to a large import.",
    )
    skip_flagged = forms.BooleanField(
        required=False, label="Skip role addresses and throwaway domains",
        help_text="Role addresses (info@, postmaster@, …), throwaway mail services and, with the check above, "
        "domains without a mail server are left out and listed with the reason. Without this they are "
        "imported with a flag you can filter on.",
    )

    def clean_tags(self):
        try:
            return importing.clean_tags(self.cleaned_data["tags"].split(","))
        except InvalidSubscriber as exc:
            raise forms.ValidationError(exc.message)


def mapping_rows(sniffed, mapping):
    """One row per column for the mapping page: its name, sample values, chosen target, attribute key."""
    rows = []
    for n, column in enumerate(sniffed.header):
        target = mapping.get(column, "")
        is_attribute = target.startswith(ATTRIBUTE_PREFIX)
        rows.append({
            "n": n, "column": column, "samples": [r[n] for r in sniffed.sample if n < len(r)][:3],
            "target": "attribute" if is_attribute else target,
            "key": target[len(ATTRIBUTE_PREFIX):] if is_attribute else attribute_key(column),
        })
    return rows


def mapping_from_post(post, header):
    """The {column: target} mapping chosen on the mapping page (checked by importing_csv.validate_mapping)."""
    mapping = {}
    for n, column in enumerate(header):
        target = post.get(f"target-{n}", "")
        if target == "attribute":
            target = ATTRIBUTE_PREFIX + post.get(f"key-{n}", "").strip()
        mapping[column] = target
    return mapping


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ["name", "match"]
        widgets = {"match": forms.RadioSelect}
        labels = {"match": "Subscribers must match"}


def field_choices():
    """(value, label) for the field select: the registered fields, attributes by key."""
    return [(name, field.label) for name, field in segments.FIELDS.items()]


def conditions_from_post(post):
    """The conditions on the segment form, in order; rows without a field are dropped."""
    columns = {name: post.getlist(name) for name in ("field", "key", "op", "value", "list", "tag")}
    conditions = []
    for n, field in enumerate(columns["field"]):
        if not field:
            continue
        cell = {name: values[n] if n < len(values) else "" for name, values in columns.items()}
        kind = segments.FIELDS[field].kind if field in segments.FIELDS else "text"
        name = f"{ATTRIBUTE_PREFIX}{cell['key'].strip()}" if field == "attributes" else field
        value = cell[kind] if kind in ("list", "tag") else cell["value"]
        conditions.append({"field": name, "op": cell["op"], "value": value})
    return conditions


def condition_rows(conditions, errors, *, blank=1):
    """Rows for the segment form: each condition split into the form's inputs, plus `blank` empty rows."""
    rows = []
    for n, condition in enumerate(conditions):
        field = str(condition.get("field", ""))
        key = field[len(ATTRIBUTE_PREFIX):] if field.startswith(ATTRIBUTE_PREFIX) else ""
        value = "" if condition.get("value") is None else str(condition.get("value"))
        rows.append({"field": "attributes" if key else field, "key": key, "op": condition.get("op", ""),
                     "value": value, "errors": errors[n] if n < len(errors) else []})
    rows.extend({"field": "", "key": "", "op": "", "value": "", "errors": []} for _ in range(blank))
    return rows
