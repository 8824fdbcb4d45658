"""The operator's view of sending. Actions call the same services as the dashboard."""

from django import forms
from django.contrib import admin, messages

from . import backends, broadcasts
from .models import (
    Backend, BouncePolicy, BrakeState, Broadcast, Event, Layout, Link, LinkStats, Message, SenderIdentity,
    StatsBucket, Template,
)

SECRET_FIELDS = ("password", "api_key", "api_secret", "dkim_private_key")


class BackendAdminForm(forms.ModelForm):
    """Secrets are write-only: never shown again; an empty input keeps the saved value."""

    password = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    api_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    api_secret = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False))
    dkim_private_key = forms.CharField(required=False, widget=forms.PasswordInput(render_value=False),
                                       help_text="PEM; paste it once, it is never shown again.")
    clear_secrets = forms.BooleanField(required=False, help_text="Remove every saved password and key.")

    class Meta:
        model = Backend
        exclude = ("last_ok_at", "last_error", "last_error_at", "consecutive_failures")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in SECRET_FIELDS:
            if self.instance.pk and getattr(self.instance, name):
                self.fields[name].help_text = "Saved. Leave empty to keep it."

    def clean(self):
        cleaned = super().clean()
        for name in SECRET_FIELDS:
            if cleaned.get("clear_secrets"):
                cleaned[name] = ""
            elif not cleaned.get(name) and self.instance.pk:
                cleaned[name] = getattr(Backend.objects.get(pk=self.instance.pk), name)
            setattr(self.instance, name, cleaned[name])
        return cleaned


@admin.register(Backend)
class BackendAdmin(admin.ModelAdmin):
    form = BackendAdminForm
    list_display = ("name", "kind", "is_active", "priority", "rate_per_second", "window_limit",
                    "price_per_thousand", "warmup_schedule", "warmup_started_on", "last_ok_at", "consecutive_failures",
                    "down_until")
    list_filter = ("kind", "is_active", "security", "warmup_started_on")
    search_fields = ("name", "host", "dkim_domain")
    readonly_fields = ("last_ok_at", "last_error", "last_error_at", "consecutive_failures", "created_at", "updated_at")
    actions = ["check_connection", "put_back_in_service"]

    @admin.action(description="Test the connection (sends nothing)")
    def check_connection(self, request, queryset):
        for backend in queryset:
            ok, text = backends.check_connection(backend)
            self.message_user(request, f"{backend}: {text}", messages.SUCCESS if ok else messages.ERROR)

    @admin.action(description="Put back in service now (clear the failure count)")
    def put_back_in_service(self, request, queryset):
        n = queryset.update(consecutive_failures=0, down_until=None)
        self.message_user(request, f"{n} backend(s) back in service.", messages.SUCCESS)


@admin.register(SenderIdentity)
class SenderIdentityAdmin(admin.ModelAdmin):
    list_display = ("name", "from_name", "from_email", "reply_to", "created_at")
    search_fields = ("name", "from_name", "from_email")
    list_filter = ("created_at",)


@admin.register(Layout)
class LayoutAdmin(admin.ModelAdmin):
    list_display = ("name", "updated_at")
    search_fields = ("name",)
    list_filter = ("updated_at",)


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    list_display = ("name", "subject", "body_format", "layout", "updated_at")
    search_fields = ("name", "subject")
    list_filter = ("body_format", "layout")


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "recipients_count", "sent_count", "failed_count", "unknown_count",
                    "skipped_count", "cost", "scheduled_at", "created_at")
    list_filter = ("status", "track_opens", "track_clicks", "in_subscriber_time_zone", "backend")
    search_fields = ("name", "subject")
    filter_horizontal = ("lists",)
    readonly_fields = ("status", "pause_reason", "recipients_count", "sent_count", "failed_count", "skipped_count",
                       "unknown_count", "cancelled_count", "created_by", "created_at", "updated_at", "started_at",
                       "fanned_out_at", "finished_at", "cost")
    actions = ["send_now", "pause", "resume", "cancel"]

    def _each(self, request, queryset, service, done):
        moved = 0
        for broadcast in queryset:
            try:
                moved += bool(service(broadcast))
            except broadcasts.BroadcastError as exc:
                self.message_user(request, f"{broadcast}: {exc}", messages.ERROR)
        self.message_user(request, f"{moved} broadcast(s) {done}.", messages.SUCCESS if moved else messages.WARNING)

    @admin.action(description="Send the selected broadcasts now")
    def send_now(self, request, queryset):
        self._each(request, queryset, broadcasts.send_now, "started")

    @admin.action(description="Pause sending")
    def pause(self, request, queryset):
        self._each(request, queryset, lambda b: broadcasts.pause(b, reason=f"Paused by {request.user}"), "paused")

    @admin.action(description="Resume sending")
    def resume(self, request, queryset):
        self._each(request, queryset, broadcasts.resume, "resumed")

    @admin.action(description="Cancel (messages not yet sent are cancelled)")
    def cancel(self, request, queryset):
        self._each(request, queryset, broadcasts.cancel, "cancelled")


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ("email", "broadcast", "status", "attempts", "next_attempt_at", "sent_at", "backend")
    list_filter = ("status", "backend")
    search_fields = ("=email", "=message_id", "=provider_id")
    list_select_related = ("broadcast", "backend")
    raw_id_fields = ("broadcast", "subscriber", "backend")
    readonly_fields = [f.name for f in Message._meta.fields]
    show_full_result_count = False  # the ledger holds millions of rows
    actions = ["retry"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Send failed or unknown messages again")
    def retry(self, request, queryset):
        n = broadcasts.retry_messages(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{n} message(s) queued again.", messages.SUCCESS)


@admin.register(Link)
class LinkAdmin(admin.ModelAdmin):
    list_display = ("url", "created_at")
    search_fields = ("url",)
    list_filter = ("created_at",)
    readonly_fields = ("url", "url_hash", "created_at")

# --- Tracking and the feedback loop (campaigns.events, campaigns.stats, campaigns.policy) --------------


class ScopeRecountMixin:
    """Admin action shared by the event and rollup admins: recount the figures from the events."""

    @admin.action(description="Recount the statistics of the selected rows' broadcasts and steps from their events")
    def recount(self, request, queryset):
        from . import stats

        scopes = set(queryset.exclude(scope="").exclude(scope_id=None).values_list("scope", "scope_id").distinct())
        for scope, scope_id in sorted(scopes):
            stats.rebuild(scope, scope_id)
        self.message_user(request, f"Recounted {len(scopes)} broadcast(s) and step(s).", messages.SUCCESS)


@admin.register(Event)
class EventAdmin(ScopeRecountMixin, admin.ModelAdmin):
    list_display = ("created_at", "kind", "message", "scope", "scope_id", "link", "is_machine", "source")
    list_filter = ("kind", "is_machine", "scope", "source")
    search_fields = ("=message__email", "=scope_id", "detail", "=uid")
    list_select_related = ("message", "link")
    raw_id_fields = ("message", "link")
    readonly_fields = [f.name for f in Event._meta.fields]
    # Millions of rows: no exact COUNT(*) on every page.
    show_full_result_count = False
    actions = ["recount"]

    def has_add_permission(self, request):
        return False  # events are records of what happened, written by campaigns.events


@admin.register(StatsBucket)
class StatsBucketAdmin(ScopeRecountMixin, admin.ModelAdmin):
    list_display = ("scope", "scope_id", "hour", "sent", "delivered", "bounced", "soft_bounced", "complained",
                    "unsubscribed", "opens", "unique_opens", "clicks", "unique_clicks")
    list_filter = ("scope",)
    search_fields = ("=scope_id",)
    readonly_fields = [f.name for f in StatsBucket._meta.fields]
    actions = ["recount"]

    def has_add_permission(self, request):
        return False


@admin.register(LinkStats)
class LinkStatsAdmin(ScopeRecountMixin, admin.ModelAdmin):
    list_display = ("link", "scope", "scope_id", "clicks", "unique_clicks", "machine_clicks")
    list_filter = ("scope",)
    search_fields = ("link__url", "=scope_id")
    list_select_related = ("link",)
    readonly_fields = [f.name for f in LinkStats._meta.fields]
    actions = ["recount"]

    def has_add_permission(self, request):
        return False


@admin.register(BouncePolicy)
class BouncePolicyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "hard_bounce_suppresses", "soft_bounce_limit", "soft_bounce_days",
                    "complaint_unsubscribes", "complaint_suppresses", "brake_bounce_percent",
                    "brake_complaint_percent", "brake_messages", "policy_pause_after", "updated_at")
    list_filter = ("hard_bounce_suppresses", "complaint_unsubscribes", "complaint_suppresses")
    search_fields = ("=soft_bounce_limit",)
    actions = ["reset_to_defaults"]

    def has_add_permission(self, request):
        return not BouncePolicy.objects.exists()  # one policy for the installation

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Reset to the defaults (suppress hard bounces, 3 soft bounces in 15 days, complaints)")
    def reset_to_defaults(self, request, queryset):
        defaults = {f.name: f.default for f in BouncePolicy._meta.fields if f.name not in ("id", "updated_at")}
        changed = queryset.update(**defaults)
        self.message_user(request, f"{changed} policy reset to the defaults.", messages.SUCCESS)


@admin.register(BrakeState)
class BrakeStateAdmin(admin.ModelAdmin):
    """The automatic brakes' counters (campaigns.brakes): read here, moved only by the pipeline."""

    list_display = ("broadcast", "bounces", "complaints", "watched", "closed_at", "bounce_tripped_at",
                    "complaint_tripped_at")
    list_filter = ("closed_at", "bounce_tripped_at", "complaint_tripped_at")
    search_fields = ("broadcast__name", "=broadcast__id")
    list_select_related = ("broadcast",)
    readonly_fields = [f.name for f in BrakeState._meta.fields]
    actions = ["rearm"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Re-arm the brakes (a brake that paused the broadcast may pause it again)")
    def rearm(self, request, queryset):
        n = queryset.update(bounce_tripped_at=None, complaint_tripped_at=None)
        self.message_user(request, f"Brakes re-armed on {n} broadcast(s).", messages.SUCCESS)


from . import admin_hooks  # noqa: E402,F401  (REST hooks, in their own module)
from . import admin_sequences  # noqa: E402,F401  (sequences, steps, enrollments)
from . import admin_domains  # noqa: E402,F401  (sending domains and their DKIM keys)
from . import admin_sunset  # noqa: E402,F401  (the sunset policy)
