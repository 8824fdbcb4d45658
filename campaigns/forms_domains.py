"""Forms for sending domains (campaigns/views_domains.py)."""

from django import forms
from django.core.exceptions import ValidationError

from .domain_names import normalize_domain
from . import warmup
from .models import SendingDomain


def _optional_domain(value):
    return normalize_domain(value) if value.strip() else ""


class DomainSettingsForm(forms.ModelForm):
    """What can change after a domain is added: the DMARC report address, the Return-Path domain
    and the warm-up (campaigns.warmup)."""

    class Meta:
        model = SendingDomain
        fields = ["dmarc_rua", "return_path_domain", "warmup_schedule", "warmup_started_on"]
        labels = {"return_path_domain": "Return-Path domain", "warmup_schedule": "Warm-up: daily caps",
                  "warmup_started_on": "Warm-up starts on"}
        widgets = {"warmup_started_on": forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")}

    def clean(self):
        data = super().clean()
        if data.get("warmup_schedule") and not data.get("warmup_started_on"):
            data["warmup_started_on"] = warmup.local_date()  # day 1 is today
        return data

    def clean_return_path_domain(self):
        return _optional_domain(self.cleaned_data.get("return_path_domain", ""))


class DomainCreateForm(DomainSettingsForm):
    ed25519 = forms.BooleanField(
        required=False, label="Also sign with an Ed25519 key (a second, shorter signature newer receivers check)",
    )

    class Meta(DomainSettingsForm.Meta):
        fields = ["domain", "dmarc_rua", "return_path_domain"]
        help_texts = {"domain": "The domain after the @ of your From address, e.g. example.com."}

    def clean_domain(self):
        name = normalize_domain(self.cleaned_data.get("domain", ""))
        if SendingDomain.objects.filter(domain=name).exists():
            raise ValidationError(f"{name} is already a sending domain.")
        return name
