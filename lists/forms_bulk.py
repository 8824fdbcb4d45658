"""The subscriber index's bulk action form (lists.views_bulk)."""

from django import forms

from .models import MailingList
from .validation import InvalidSubscriber, clean_tag

MAX_SELECTED = 1000  # ids posted from the page; a larger set is a filter, not a selection

ACTIONS = [("tag", "Add a tag"), ("untag", "Remove a tag"), ("unsubscribe", "Unsubscribe"), ("delete", "Delete")]
SCOPES = [("selected", "The selected subscribers"), ("filter", "Every subscriber matching the filter")]


class BulkActionForm(forms.Form):
    action = forms.ChoiceField(choices=ACTIONS, error_messages={"required": "Choose what to do."})
    scope = forms.ChoiceField(choices=SCOPES, initial="selected")
    ids = forms.CharField(required=False)  # read with getlist() in clean_ids
    tag_name = forms.CharField(required=False, max_length=100, label="Tag")
    from_list = forms.ModelChoiceField(queryset=MailingList.objects.all(), required=False, empty_label="All lists",
                                       label="From list")
    confirmed = forms.BooleanField(required=False)
    typed_count = forms.IntegerField(required=False, label="Type the number of subscribers to confirm")

    def __init__(self, data, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.selected_ids = self._ids(data)

    @staticmethod
    def _ids(data):
        values = data.getlist("ids") if hasattr(data, "getlist") else []
        return sorted({int(v) for v in values if str(v).isdigit()})[:MAX_SELECTED]

    def clean(self):
        data = super().clean()
        action = data.get("action")
        if action in ("tag", "untag"):
            try:
                data["tag_name"] = clean_tag(data.get("tag_name") or "")
            except InvalidSubscriber as exc:
                self.add_error("tag_name", exc.message if data.get("tag_name") else "Type the tag to add or remove.")
        if data.get("scope") == "selected" and not self.selected_ids:
            raise forms.ValidationError(
                "Tick at least one subscriber, or choose “Every subscriber matching the filter”.")
        return data
