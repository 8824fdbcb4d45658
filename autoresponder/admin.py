"""Two-factor sign-in in the Django admin: who has it, and a reset for a lost phone (secrets never shown)."""

from django.contrib import admin, messages

from . import twofactor
from .models import RecoveryCode, TwoFactor


@admin.register(TwoFactor)
class TwoFactorAdmin(admin.ModelAdmin):
    list_display = ("user", "is_on", "created_at", "confirmed_at", "last_used_at")
    list_filter = (("confirmed_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("user__username", "user__email")
    fields = ("user", "created_at", "confirmed_at", "last_used_at")
    readonly_fields = fields
    actions = ("reset",)

    @admin.display(boolean=True, description="on")
    def is_on(self, obj):
        return obj.is_confirmed

    def has_add_permission(self, request):
        return False  # users set it up themselves: the secret must reach their phone, not the admin

    @admin.action(description="Reset two-factor sign-in (the user signs in with the password alone)")
    def reset(self, request, queryset):
        users = [device.user for device in queryset.select_related("user")]
        for user in users:
            twofactor.disable(user)
        self.message_user(request, f"Two-factor sign-in reset for {len(users)} user(s).", messages.SUCCESS)


@admin.register(RecoveryCode)
class RecoveryCodeAdmin(admin.ModelAdmin):
    list_display = ("user", "created_at", "used_at")
    list_filter = (("used_at", admin.EmptyFieldListFilter), "created_at")
    search_fields = ("user__username",)
    fields = ("user", "created_at", "used_at")
    readonly_fields = fields
    actions = ("mark_used",)

    def has_add_permission(self, request):
        return False

    @admin.action(description="Invalidate the selected recovery codes")
    def mark_used(self, request, queryset):
        from django.utils import timezone

        changed = queryset.filter(used_at__isnull=True).update(used_at=timezone.now())
        self.message_user(request, f"{changed} recovery code(s) invalidated.", messages.SUCCESS)
