"""The operator's view of the audience. Actions go through lists.services, like every other entry point."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db import models

from . import hygiene_import, importing, services
from .models import ErasedAddress, ImportJob, MailingList, Segment, Subscriber, Subscription, Suppression, Tag


class TagActionForm(ActionForm):
    tag = forms.CharField(required=False, label="Tag (for the tag actions)", max_length=100)


@admin.register(MailingList)
class MailingListAdmin(admin.ModelAdmin):
    list_display = ("name", "opt_in", "from_email", "track_opens", "track_clicks", "privacy_mode", "is_archived",
                    "created_at")
    list_filter = ("opt_in", "is_archived", "track_opens", "track_clicks", "privacy_mode", "reject_disposable")
    search_fields = ("name", "from_email", "=public_id")
    readonly_fields = ("public_id", "created_at", "updated_at")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = ["archive", "unarchive"]

    @admin.action(description="Archive the selected lists (stop signups)")
    def archive(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_archived=True)} list(s) archived.", messages.SUCCESS)

    @admin.action(description="Reopen the selected lists for signups")
    def unarchive(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_archived=False)} list(s) reopened.", messages.SUCCESS)


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "created_at")
    search_fields = ("name",)
    list_filter = ("created_at",)


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    autocomplete_fields = ("mailing_list",)
    fields = ("mailing_list", "status", "source", "consent_at", "confirmed_at", "unsubscribed_at")
    readonly_fields = ("consent_at", "confirmed_at", "unsubscribed_at")
    show_change_link = True


def _count(request, admin_obj, n, what):
    admin_obj.message_user(request, f"{n} {what}.", messages.SUCCESS)


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ("email", "name", "status", "flags", "time_zone", "created_at")
    list_filter = ("status", "is_role_address", "is_disposable_address", "has_no_mx", "subscriptions__status",
                   "subscriptions__mailing_list", "tags")
    search_fields = ("email", "name")
    autocomplete_fields = ("tags",)
    readonly_fields = ("created_at", "updated_at")
    inlines = [SubscriptionInline]
    action_form = TagActionForm
    actions = ["add_tag", "remove_tag", "unsubscribe_all", "suppress_addresses", "blocklist", "wipe", "recheck_flags"]
    show_full_result_count = False  # no COUNT(*) over a million rows on every page

    @admin.display(description="Hygiene flags")
    def flags(self, subscriber):
        labels = [label for field, label in (("is_role_address", "role address"),
                                             ("is_disposable_address", "throwaway"), ("has_no_mx", "no mail server"))
                  if getattr(subscriber, field)]
        return ", ".join(labels) or "—"

    @admin.action(description="Check the role and throwaway flags of the selected subscribers again")
    def recheck_flags(self, request, queryset):
        # No MX look-ups here (a request should not wait on DNS): manage.py flag_subscribers --check-mx does them.
        _count(request, self, hygiene_import.reflag(queryset), "subscriber(s) with changed flags")

    def _tag_name(self, request):
        name = request.POST.get("tag", "").strip()
        if not name:
            self.message_user(request, "Type a tag name in the box next to the action.", messages.ERROR)
        return name

    @admin.action(description="Add the tag to the selected subscribers")
    def add_tag(self, request, queryset):
        name = self._tag_name(request)
        if name:
            try:
                for subscriber in queryset:
                    services.tag(subscriber, name)
            except services.InvalidSubscriber as exc:
                return self.message_user(request, exc.message, messages.ERROR)
            _count(request, self, queryset.count(), f"subscriber(s) tagged “{name}”")

    @admin.action(description="Remove the tag from the selected subscribers")
    def remove_tag(self, request, queryset):
        name = self._tag_name(request)
        if name:
            for subscriber in queryset:
                services.untag(subscriber, name)
            _count(request, self, queryset.count(), f"subscriber(s) untagged “{name}”")

    @admin.action(description="Unsubscribe the selected subscribers from every list")
    def unsubscribe_all(self, request, queryset):
        n = sum(services.unsubscribe(s, reason=f"By {request.user.get_username()} in the admin") for s in queryset)
        _count(request, self, n, "subscription(s) unsubscribed")

    @admin.action(description="Suppress the selected addresses (never mail them again)")
    def suppress_addresses(self, request, queryset):
        for subscriber in queryset:
            if not services.is_wiped_address(subscriber.email):
                services.suppress(subscriber.email, reason="manual", detail=f"By {request.user.get_username()} in the admin")
        _count(request, self, queryset.count(), "address(es) suppressed")

    @admin.action(description="Blocklist the selected subscribers")
    def blocklist(self, request, queryset):
        _count(request, self, queryset.update(status=Subscriber.BLOCKLISTED), "subscriber(s) blocklisted")

    @admin.action(description="GDPR: erase the personal data of the selected subscribers")
    def wipe(self, request, queryset):
        wiped = [services.wipe_subscriber(s) for s in queryset if not services.is_wiped_address(s.email)]
        _count(request, self, len(wiped), "subscriber(s) erased")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("subscriber", "mailing_list", "status", "source", "consent_at", "confirmed_at", "unsubscribed_at")
    list_filter = ("status", "source", "mailing_list")
    search_fields = ("subscriber__email", "mailing_list__name")
    raw_id_fields = ("subscriber",)
    autocomplete_fields = ("mailing_list",)
    list_select_related = ("subscriber", "mailing_list")
    readonly_fields = ("created_at", "updated_at", "confirmation_sent_at")
    actions = ["confirm_selected", "unsubscribe_selected", "resend_confirmation"]
    show_full_result_count = False

    @admin.action(description="Confirm the selected subscriptions")
    def confirm_selected(self, request, queryset):
        pending = queryset.filter(status=Subscription.UNCONFIRMED)
        n = sum(1 for s in pending if services.confirm(s).is_confirmed)
        _count(request, self, n, "subscription(s) confirmed")

    @admin.action(description="Unsubscribe the selected subscriptions")
    def unsubscribe_selected(self, request, queryset):
        reason = f"By {request.user.get_username()} in the admin"
        n = sum(services.unsubscribe(s.subscriber, s.mailing_list, reason=reason) for s in queryset.select_related("subscriber", "mailing_list"))
        _count(request, self, n, "subscription(s) unsubscribed")

    @admin.action(description="Send the confirmation mail again (unconfirmed only, within the mail limits)")
    def resend_confirmation(self, request, queryset):
        pending = queryset.filter(status=Subscription.UNCONFIRMED).select_related("subscriber", "mailing_list")
        _count(request, self, sum(services.request_confirmation(s) for s in pending), "confirmation mail(s) queued")


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    list_display = ("email", "reason", "created_at")
    list_filter = ("reason", "created_at")
    search_fields = ("email", "detail")
    readonly_fields = ("created_at",)
    actions = ["unsuppress"]

    @admin.action(description="Lift the selected suppressions (mail these addresses again)")
    def unsuppress(self, request, queryset):
        n = sum(services.unsuppress(s.email) for s in queryset)
        _count(request, self, n, "suppression(s) lifted")


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    list_display = ("name", "match", "updated_at")
    list_filter = ("match",)
    search_fields = ("name",)


@admin.register(ErasedAddress)
class ErasedAddressAdmin(admin.ModelAdmin):
    """Read-only: a marker is removed only by its owner's fresh signup, or deleted here on purpose."""

    list_display = ("digest", "created_at")
    list_filter = ("created_at",)
    search_fields = ("=digest",)
    search_help_text = "Type the full address to check whether it was erased."
    readonly_fields = ("digest", "created_at")

    def get_search_results(self, request, queryset, search_term):
        # Only the keyed hash is stored, so an address is looked up by hashing it the same way.
        if "@" in search_term:
            return queryset.filter(digest=services.erased_digest(search_term)), False
        return super().get_search_results(request, queryset, search_term)

    def has_add_permission(self, request):
        return False


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """CSV imports, started from the dashboard or `manage.py import_subscribers`; kept as a record."""

    list_display = ("pk", "original_name", "mailing_list", "mode", "confirmed", "status", "rows", "created",
                    "updated", "skipped", "invalid", "flagged", "created_by", "created_at")
    list_filter = ("status", "mode", "confirmed", "check_mx", "skip_flagged", "created_at")
    search_fields = ("original_name", "mailing_list__name", "created_by__username", "failure")
    list_select_related = ("mailing_list", "created_by")
    readonly_fields = [f.name for f in ImportJob._meta.fields]
    actions = ["run_again"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Run the selected failed or stuck imports again")
    def run_again(self, request, queryset):
        restarted = sum(1 for job in queryset if importing.restart(job))
        self.message_user(request, f"{restarted} import(s) queued again. Finished imports and those whose file "
                                   "is gone are left as they are.", messages.SUCCESS)
