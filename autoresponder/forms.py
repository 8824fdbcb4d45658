"""Forms for the users page and the account page (two-factor sign-in)."""

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator

from .roles import ROLES

ROLE_CHOICES = [
    ("viewer", "Viewer — reads everything, changes nothing"),
    ("editor", "Editor — lists, subscribers, content and sends"),
    ("admin", "Admin — also sending backends and sender identities"),
    ("owner", "Owner — also users and roles"),
]
assert [r for r, _ in ROLE_CHOICES] == list(ROLES)

ACCESS_CHOICES = [
    ("link", "A link where they choose their own password (valid for three days)"),
    ("password", "A temporary password that I pass on to them"),
]


class UserCreateForm(forms.Form):
    username = forms.CharField(
        max_length=150, validators=[UnicodeUsernameValidator()],
        help_text="Letters, digits and @ . + - _ only. They sign in with it.",
        error_messages={"required": "Enter a username."},
    )
    email = forms.EmailField(required=False, help_text="Optional; for your records.")
    role = forms.ChoiceField(choices=ROLE_CHOICES, initial="editor", widget=forms.RadioSelect)
    access = forms.ChoiceField(choices=ACCESS_CHOICES, initial="link", widget=forms.RadioSelect,
                               label="How they get in")


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=ROLE_CHOICES, widget=forms.RadioSelect)


class AccessForm(forms.Form):
    access = forms.ChoiceField(choices=ACCESS_CHOICES, initial="link", widget=forms.RadioSelect,
                               label="New way in")


class CodeForm(forms.Form):
    code = forms.CharField(
        max_length=20, label="Authentication code",
        error_messages={"required": "Enter the code your authenticator app shows."},
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "autofocus": True,
                                      "spellcheck": "false", "autocapitalize": "off"}),
    )


class PasswordConfirmForm(forms.Form):
    password = forms.CharField(
        label="Your password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        error_messages={"required": "Enter your password to confirm it is you."},
    )
