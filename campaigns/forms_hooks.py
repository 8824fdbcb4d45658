"""The dashboard's form for subscribing a REST hook (campaigns/views_hooks.py)."""

from django import forms

from .hooks import EVENTS
from .hooks_client import MAX_URL


class HookForm(forms.Form):
    event = forms.ChoiceField(choices=[(name, f"{name}: {text}") for name, text in EVENTS.items()])
    target = forms.CharField(
        label="Target URL", max_length=MAX_URL, widget=forms.URLInput(attrs={"placeholder": "https://"}),
        help_text="Where each event is POSTed as JSON. It must be an http(s) address of a public server.",
    )
