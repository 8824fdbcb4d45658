"""Forms for the public signup page and the dashboard. Checks that matter everywhere live in lists.validation."""

import json
import re

from django import forms
from liquid.exceptions import LiquidError

from . import confirmation, hygiene
from .models import MailingList, Subscriber
from .validation import InvalidSubscriber, clean_attributes, clean_name, clean_tag, clean_time_zone, normalize_email

FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
HONEYPOT = "website"  # bots fill in anything that looks like a URL field; people never see it
RESERVED_FIELDS = {"email", "name", HONEYPOT, "csrfmiddlewaretoken"}
SINGLE_THANKS = "Thanks! You're subscribed."


def _as_validation_error(exc):
    return forms.ValidationError(exc.message)


def _checked(check, value):
    try:
        return check(value)
    except InvalidSubscriber as exc:
        raise _as_validation_error(exc)


def custom_fields(mailing_list):
    """The list's extra signup fields, keeping only well-formed ones (the admin can store anything)."""
    found = []
    for item in mailing_list.form_fields if isinstance(mailing_list.form_fields, list) else []:
        if not isinstance(item, dict) or not FIELD_NAME.match(str(item.get("name", ""))):
            continue
        if item["name"] in RESERVED_FIELDS:
            continue
        label = str(item.get("label") or item["name"]).strip()[:100]
        found.append({"name": item["name"], "label": label, "required": bool(item.get("required"))})
    return found


class SignupForm(forms.Form):
    """Name, address and the list's own fields; the honeypot is checked by the view."""

    email = forms.CharField(label="Email address", max_length=254)
    name = forms.CharField(label="Name", max_length=200, required=False)

    def __init__(self, mailing_list, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.mailing_list = mailing_list
        self.fields["email"].widget = forms.EmailInput(attrs={"autocomplete": "email", "maxlength": 254})
        self.fields["name"].widget.attrs.update({"autocomplete": "name"})
        # Extra fields are posted under their own names (reserved names are excluded by custom_fields).
        self.attribute_names = []
        for field in custom_fields(mailing_list):
            self.fields[field["name"]] = forms.CharField(label=field["label"], max_length=200, required=field["required"])
            self.attribute_names.append(field["name"])
        self.fields[HONEYPOT] = forms.CharField(required=False, label="Leave this empty")
        self.fields[HONEYPOT].widget.attrs.update({"tabindex": "-1", "autocomplete": "off"})

    def clean_email(self):
        email = _checked(normalize_email, self.cleaned_data["email"])
        if self.mailing_list.reject_disposable and hygiene.is_disposable_address(email):
            raise forms.ValidationError(hygiene.DISPOSABLE_SIGNUP_MESSAGE)
        return email

    def clean_name(self):
        return _checked(clean_name, self.cleaned_data["name"])

    def clean(self):
        data = super().clean()
        attributes = {name: data[name] for name in self.attribute_names if data.get(name)}
        try:
            data["attributes"] = clean_attributes(attributes)
        except InvalidSubscriber as exc:
            raise _as_validation_error(exc)
        return data

    @property
    def is_bot(self):
        return bool(self.data.get(HONEYPOT))

    @property
    def visible_fields_list(self):
        return [self[name] for name in self.fields if name != HONEYPOT]


def _fields_to_text(value):
    lines = []
    for field in value or []:
        parts = [field.get("name", ""), field.get("label", "")] + (["required"] if field.get("required") else [])
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def parse_form_fields(text):
    """One field per line: `name | Label | required` (label and `required` optional)."""
    fields, seen = [], set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = [p.strip() for p in line.split("|")]
        name = parts[0]
        if not FIELD_NAME.match(name) or name in RESERVED_FIELDS or name in seen:
            raise forms.ValidationError(
                f"Line {number}: {name!r} cannot be a field name. Use lower-case letters, digits and _, "
                "start with a letter, and avoid email, name and website."
            )
        seen.add(name)
        label = parts[1] if len(parts) > 1 and parts[1] else name.replace("_", " ").capitalize()
        fields.append({"name": name, "label": label[:100], "required": len(parts) > 2 and parts[2].lower() == "required"})
    return fields


class FormFieldsField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 4})

    def prepare_value(self, value):
        return _fields_to_text(value) if isinstance(value, list) else value

    def to_python(self, value):
        return parse_form_fields(super().to_python(value) or "")


class MailingListForm(forms.ModelForm):
    thank_you_url = forms.URLField(
        required=False, assume_scheme="https", label="Thank-you page",
        help_text="Send people here after signup instead of showing the thank-you message.",
    )
    form_fields = FormFieldsField(
        required=False,
        label="Extra signup fields",
        help_text="One per line: name | Label | required. Stored as subscriber attributes, e.g. "
        "company | Company | required",
    )

    class Meta:
        model = MailingList
        fields = [
            "name", "description", "opt_in", "from_name", "from_email", "reply_to", "postal_address",
            "consent_text", "form_fields", "thank_you_message", "thank_you_url", "confirmed_message",
            "confirmation_subject", "confirmation_body", "accent_color", "time_zone",
            "track_opens", "track_clicks", "privacy_mode", "reject_disposable", "is_archived",
        ]
        widgets = {
            "accent_color": forms.TextInput(attrs={"type": "color"}),
            "description": forms.Textarea(attrs={"rows": 3}),
            "postal_address": forms.Textarea(attrs={"rows": 3}),
            "consent_text": forms.Textarea(attrs={"rows": 3}),
            "thank_you_message": forms.Textarea(attrs={"rows": 3}),
            "confirmed_message": forms.Textarea(attrs={"rows": 3}),
        }
        help_texts = {
            "confirmation_subject": "Liquid template; you can use {{ list.name }} and {{ subscriber.name }}.",
            "confirmation_body": "Liquid template; must contain {{ confirm_url }}, the link that confirms.",
            "reject_disposable": "The signup form asks people whose address is at a throwaway mail service "
                                 "(such as mailinator.com) for their regular address instead.",
        }

    def _one_line(self, field):
        value = self.cleaned_data.get(field, "")
        if "\r" in value or "\n" in value:
            raise forms.ValidationError("This cannot contain line breaks.")
        return value

    def clean_name(self):
        return self._one_line("name")

    def clean_from_name(self):
        return self._one_line("from_name")

    def clean_time_zone(self):
        return _checked(clean_time_zone, self.cleaned_data.get("time_zone", ""))

    def clean_confirmation_subject(self):
        return _check_template(self._one_line("confirmation_subject"))

    def clean_confirmation_body(self):
        body = _check_template(self.cleaned_data.get("confirmation_body", ""))
        if "confirm_url" not in body:
            raise forms.ValidationError("Put {{ confirm_url }} in the text: it is the link that confirms the signup.")
        return body

    def clean(self):
        data = super().clean()
        default_thanks = MailingList._meta.get_field("thank_you_message").default
        # The default thank-you text talks about a confirmation mail, which single opt-in lists do not send.
        if data.get("opt_in") == MailingList.SINGLE and data.get("thank_you_message") == default_thanks:
            data["thank_you_message"] = SINGLE_THANKS
        return data


def _check_template(source):
    sample = confirmation.template_context(
        MailingList(name="Sample list"), Subscriber(email="reader@example.org", name="Reader"),
        "https://example.org/c/sample/",
    )
    try:
        confirmation.render_template(source, sample)
    except LiquidError as exc:
        raise forms.ValidationError(f"This template has an error: {exc}")
    return source


class SubscriberForm(forms.Form):
    email = forms.CharField(label="Email address", max_length=254)
    name = forms.CharField(max_length=200, required=False)
    time_zone = forms.CharField(max_length=64, required=False, help_text="For example Europe/Berlin; empty: the list's.")
    attributes = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), required=False,
        help_text='A JSON object, e.g. {"plan": "pro", "city": "Lyon"}.',
    )

    def clean_email(self):
        return _checked(normalize_email, self.cleaned_data["email"])

    def clean_name(self):
        return _checked(clean_name, self.cleaned_data["name"])

    def clean_time_zone(self):
        return _checked(clean_time_zone, self.cleaned_data["time_zone"])

    def clean_attributes(self):
        text = self.cleaned_data["attributes"].strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"This is not valid JSON ({exc}).")
        return _checked(clean_attributes, value)


class AddSubscriberForm(forms.Form):
    email = forms.CharField(label="Email address", max_length=254)
    name = forms.CharField(max_length=200, required=False)
    confirmed = forms.BooleanField(
        required=False, label="They already agreed to receive mail: skip the confirmation mail",
    )

    def clean_email(self):
        return _checked(normalize_email, self.cleaned_data["email"])

    def clean_name(self):
        return _checked(clean_name, self.cleaned_data["name"])


class TagForm(forms.Form):
    tags = forms.CharField(max_length=500, help_text="One or more tags, separated by commas.")

    def clean_tags(self):
        names = [n.strip() for n in self.cleaned_data["tags"].split(",") if n.strip()]
        if not names:
            raise forms.ValidationError("Enter at least one tag.")
        for name in names:
            _checked(clean_tag, name)
        return names
