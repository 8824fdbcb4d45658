"""The operator's view of sending domains and their DKIM keys. Private keys are never shown."""

from django.contrib import admin, messages

from . import domain_checks
from .models import DkimKey, SendingDomain


class DkimKeyInline(admin.TabularInline):
    model = DkimKey
    extra = 0
    can_delete = False
    fields = ("selector", "algorithm", "state", "record", "created_at")
    readonly_fields = fields

    @admin.display(description="DNS record")
    def record(self, key):
        return f"{key.record_name} TXT {key.record_value}"

    def has_add_permission(self, request, obj=None):
        return False  # keys are made by campaigns.domains (create, rotate), never typed in


@admin.register(SendingDomain)
class SendingDomainAdmin(admin.ModelAdmin):
    list_display = ("domain", "status", "checked_at", "verified_at", "dmarc_rua", "return_path_domain",
                    "warmup_schedule", "warmup_started_on", "created_at")
    list_filter = ("status", "checked_at", "created_at")
    search_fields = ("domain", "dmarc_rua", "return_path_domain")
    readonly_fields = ("status", "checks", "checked_at", "verified_at", "created_at", "updated_at")
    inlines = [DkimKeyInline]
    actions = ["check_now"]

    def has_add_permission(self, request):
        return False  # added in the dashboard (Sending → Domains), which creates the keys

    def get_readonly_fields(self, request, obj=None):
        # The keys sign for this name: a different domain is a new sending domain, with new keys.
        return ("domain", *self.readonly_fields) if obj else self.readonly_fields

    @admin.action(description="Check the DNS records now")
    def check_now(self, request, queryset):
        for sending_domain in queryset:
            domain_checks.check(sending_domain)
            level = messages.SUCCESS if sending_domain.status == SendingDomain.VERIFIED else messages.WARNING
            self.message_user(request, f"{sending_domain}: {sending_domain.get_status_display()}.", level)


@admin.register(DkimKey)
class DkimKeyAdmin(admin.ModelAdmin):
    list_display = ("selector", "domain", "algorithm", "state", "created_at")
    list_filter = ("algorithm", "state", "created_at")
    search_fields = ("selector", "domain__domain")
    fields = ("domain", "selector", "algorithm", "state", "public_key", "created_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False
