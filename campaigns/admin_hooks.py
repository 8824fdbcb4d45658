"""The Django admin for REST hooks and their deliveries (imported by campaigns/admin.py).

The signing secret is never shown here either; replace it from the dashboard's hook page.
"""

from django.contrib import admin, messages

from . import hooks
from .models import Hook, HookDelivery


@admin.register(Hook)
class HookAdmin(admin.ModelAdmin):
    list_display = ("event", "target", "owner", "is_active", "consecutive_failures", "last_success_at", "disabled_at")
    list_filter = ("event", "is_active")
    search_fields = ("target", "owner__username", "disabled_reason")
    # The target is checked against SSRF when subscribed (campaigns.hooks.subscribe): not edited here.
    readonly_fields = ("event", "target", "owner", "consecutive_failures", "last_success_at", "last_failure_at",
                       "disabled_at", "disabled_reason", "created_at", "updated_at")
    fields = ("is_active", *readonly_fields)
    actions = ("enable_hooks", "disable_hooks")

    def has_add_permission(self, request):
        return False  # a hook needs a secret and a checked target: add it in the dashboard or the API

    @admin.action(description="Enable the selected hooks (their waiting deliveries go out)")
    def enable_hooks(self, request, queryset):
        for hook in queryset:
            hooks.enable(hook)
        messages.success(request, f"{queryset.count()} hook(s) enabled.")

    @admin.action(description="Disable the selected hooks")
    def disable_hooks(self, request, queryset):
        for hook in queryset:
            hooks.disable(hook, f"Disabled by {request.user.get_username()} in the admin.")
        messages.success(request, f"{queryset.count()} hook(s) disabled.")


@admin.register(HookDelivery)
class HookDeliveryAdmin(admin.ModelAdmin):
    list_display = ("event", "hook", "status", "attempts", "last_status", "created_at", "next_attempt_at")
    list_filter = ("status", "event")
    search_fields = ("uid", "hook__target")
    readonly_fields = [field.name for field in HookDelivery._meta.fields]
    list_select_related = ("hook",)
    actions = ("retry_deliveries",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Send the selected failed deliveries again")
    def retry_deliveries(self, request, queryset):
        failed = list(queryset.filter(status=HookDelivery.FAILED))
        for delivery in failed:
            hooks.retry_delivery(delivery)
        messages.success(request, f"{len(failed)} failed deliver{'y' if len(failed) == 1 else 'ies'} queued again.")
