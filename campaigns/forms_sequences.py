"""Dashboard forms for sequences and their steps (campaigns.views_sequences)."""

from django import forms

from lists.models import MailingList, Segment, Tag

from . import scheduling
from .forms import CONTENT_HELP, CONTENT_WIDGETS, OneLineMixin, field_groups
from .models import Backend, Layout, Sequence, SenderIdentity, Step

SEQUENCE_GROUPS = (
    ("Sequence", ("name", "mailing_list", "segment", "sender")),
    ("Who enters", ("trigger", "trigger_tag", "enroll_existing", "reentry")),
    ("Who leaves early", ("exit_tag",)),
    ("Sending", ("skip_after_days", "backend", "track_opens", "track_clicks")),
)
STEP_GROUPS = (
    ("When", ("timing", "delay_amount", "delay_unit", "date_attribute", "date_offset_days", "yearly")),
    ("Send window (in each subscriber's time zone)", ("window_start_hour", "window_end_hour", "weekdays")),
    ("Message", ("name", "subject", "body_format", "layout", "body", "text_body")),
)
START_HOURS = [("", "Any time")] + [(str(h), f"{h:02d}:00") for h in range(24)]
END_HOURS = [("", "—")] + [(str(h), f"{h:02d}:00") for h in range(1, 25)]
WEEKDAYS = [(str(d), name) for d, name in enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday",
                                                     "Saturday", "Sunday"))]


class SequenceForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name",)

    class Meta:
        model = Sequence
        fields = ("name", "mailing_list", "segment", "sender", "trigger", "trigger_tag", "enroll_existing",
                  "reentry", "exit_tag", "skip_after_days", "backend", "track_opens", "track_clicks")
        labels = {
            "mailing_list": "List", "sender": "From", "trigger": "Subscribers enter on",
            "trigger_tag": "Tag that starts it", "enroll_existing": "When switched on, also enroll those already there",
            "reentry": "Entering again", "exit_tag": "Leave when tagged", "skip_after_days": "Skip steps late by more than (days)",
            "backend": "Send through", "track_opens": "Track opens", "track_clicks": "Track clicks",
        }
        widgets = {"trigger": forms.RadioSelect, "reentry": forms.RadioSelect}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["mailing_list"].queryset = MailingList.objects.filter(is_archived=False).order_by("name")
        self.fields["segment"].queryset = Segment.objects.order_by("name")
        self.fields["segment"].empty_label = "Everyone on the list"
        for name in ("trigger_tag", "exit_tag"):
            self.fields[name].queryset = Tag.objects.order_by("name")
            self.fields[name].empty_label = "No tag"
        self.fields["backend"].queryset = Backend.objects.filter(is_active=True)
        self.fields["backend"].empty_label = "Automatic: the backends in priority order"
        self.fields["sender"].queryset = SenderIdentity.objects.order_by("name")
        self.fields["sender"].empty_label = None if SenderIdentity.objects.exists() else "—"
        if self.instance.pk and self.instance.status != Sequence.DRAFT:
            # "Existing or only new" is decided once, when the sequence is first switched on.
            self.fields["enroll_existing"].disabled = True

    def groups(self):
        return field_groups(self, SEQUENCE_GROUPS)

    def clean(self):
        data = super().clean()
        if data.get("trigger") == Sequence.ON_TAG and not data.get("trigger_tag"):
            self.add_error("trigger_tag", "Choose the tag that starts this sequence.")
        if data.get("exit_tag") and data.get("exit_tag") == data.get("trigger_tag"):
            self.add_error("exit_tag", "The exit tag cannot be the tag that starts the sequence.")
        return data


class StepForm(OneLineMixin, forms.ModelForm):
    one_line_fields = ("name", "subject", "date_attribute")
    window_start_hour = forms.TypedChoiceField(
        label="From", choices=START_HOURS, coerce=int, empty_value=None, required=False)
    window_end_hour = forms.TypedChoiceField(
        label="Until", choices=END_HOURS, coerce=int, empty_value=None, required=False,
        help_text="Until is not included: 9:00–11:00 sends from 9:00 to 10:59.")
    weekdays = forms.TypedMultipleChoiceField(
        label="On", choices=WEEKDAYS, coerce=int, widget=forms.CheckboxSelectMultiple,
        help_text="A step due outside these hours or days waits for the next opening.")

    class Meta:
        model = Step
        fields = ("name", "subject", "body_format", "layout", "body", "text_body", "timing", "delay_amount",
                  "delay_unit", "date_attribute", "date_offset_days", "yearly", "window_start_hour",
                  "window_end_hour")
        labels = {
            "name": "Name (for you)", "body_format": "Body format", "text_body": "Plain-text version",
            "timing": "Send", "delay_amount": "Wait", "delay_unit": "Unit", "date_attribute": "Date attribute",
            "date_offset_days": "Days from the date", "yearly": "Every year",
        }
        widgets = {**CONTENT_WIDGETS, "timing": forms.RadioSelect}
        help_texts = {
            **CONTENT_HELP,
            "delay_amount": "After the previous step (the first step: after entering). 0 sends at once.",
            "date_offset_days": "-7 sends a week before the date, 0 on the day.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["layout"].queryset = Layout.objects.order_by("name")
        self.fields["layout"].empty_label = "No layout"
        mask = self.instance.window_weekdays if self.instance.pk else 127
        self.fields["weekdays"].initial = sorted(scheduling.weekdays_from_mask(mask))

    def groups(self):
        return field_groups(self, STEP_GROUPS)

    def clean(self):
        data = super().clean()
        days = data.get("weekdays")
        if days is not None:
            self.instance.window_weekdays = scheduling.mask_from_weekdays(days)
        try:
            scheduling.Window(data.get("window_start_hour"), data.get("window_end_hour"),
                              weekdays=days if days is not None else scheduling.ALL_WEEKDAYS)
        except scheduling.ScheduleError as exc:
            self.add_error("weekdays" if "weekday" in str(exc) else "window_end_hour", str(exc))
        return data

    def options(self):
        """The step fields for campaigns.sequences.add_step / update_step."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["window_weekdays"] = scheduling.mask_from_weekdays(self.cleaned_data["weekdays"])
        return data


class EnrollForm(forms.Form):
    email = forms.EmailField(label="Subscriber's email", max_length=254)
