"""The sunset policy in the admin (campaigns.sunset): one row, also edited on Settings › Sunset."""

from django.contrib import admin, messages

from . import sunset
from .models import SunsetPolicy


@admin.register(SunsetPolicy)
class SunsetPolicyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "mode", "months", "inactive_subscribers", "inactive_subscriptions", "counted_at",
                    "last_applied_at", "last_applied_count")
    list_filter = ("mode",)
    search_fields = ("=months",)
    readonly_fields = ("inactive_subscribers", "inactive_subscriptions", "counted_months", "counted_at",
                       "daily_run_at", "last_applied_at", "last_applied_count", "updated_at")
    actions = ["count_now", "switch_off"]

    def has_add_permission(self, request):
        return not SunsetPolicy.objects.exists()  # one policy for the installation

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Count the inactive subscribers now")
    def count_now(self, request, queryset):
        policy = sunset.count()
        self.message_user(request, f"{policy.inactive_subscribers} subscriber(s) have not opened or clicked in "
                                   f"{policy.months} months.", messages.SUCCESS)

    @admin.action(description="Switch the sunset policy off")
    def switch_off(self, request, queryset):
        queryset.update(mode=SunsetPolicy.OFF)
        self.message_user(request, "Sunset policy switched off: nobody is unsubscribed for not reading.",
                          messages.SUCCESS)
