"""Admin for sequences, their steps and enrollments. Changes of state go through
campaigns.sequences, as in the dashboard: switching on checks what is missing,
deleting cancels queued mail first, removing a subscriber cancels theirs."""

from django.contrib import admin, messages

from . import sequences
from .models import Enrollment, Sequence, Step


class StepInline(admin.TabularInline):
    model = Step
    extra = 0
    fields = ("position", "subject", "timing", "delay_amount", "delay_unit", "window_start_hour", "window_end_hour",
              "is_active")
    show_change_link = True


@admin.register(Sequence)
class SequenceAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "mailing_list", "trigger", "reentry", "skip_after_days", "activated_at",
                    "created_at")
    list_filter = ("status", "trigger", "reentry", "mailing_list")
    search_fields = ("name",)
    readonly_fields = ("status", "pause_reason", "activated_at", "tag_watermark", "discovered_at", "created_by",
                       "created_at", "updated_at")
    list_select_related = ("mailing_list",)
    inlines = [StepInline]
    actions = ["switch_on", "pause", "resume"]

    def _each(self, request, queryset, service, done):
        moved = 0
        for sequence in queryset:
            try:
                service(sequence)
                moved += 1
            except sequences.SequenceError as exc:
                self.message_user(request, f"{sequence}: {exc}", messages.ERROR)
        self.message_user(request, f"{moved} sequence(s) {done}.", messages.SUCCESS if moved else messages.WARNING)

    @admin.action(description="Switch on (drafts and paused sequences)")
    def switch_on(self, request, queryset):
        self._each(request, queryset.exclude(status=Sequence.ACTIVE), sequences.enable, "running")

    @admin.action(description="Pause (everyone waits where they are)")
    def pause(self, request, queryset):
        self._each(request, queryset.filter(status=Sequence.ACTIVE),
                   lambda s: sequences.pause(s, reason=f"Paused by {request.user}."), "paused")

    @admin.action(description="Resume (stale steps are skipped)")
    def resume(self, request, queryset):
        self._each(request, queryset.filter(status=Sequence.PAUSED), sequences.resume, "resumed")

    def delete_model(self, request, obj):
        sequences.delete_sequence(obj)

    def delete_queryset(self, request, queryset):
        for sequence in queryset:
            sequences.delete_sequence(sequence)


@admin.register(Step)
class StepAdmin(admin.ModelAdmin):
    list_display = ("__str__", "sequence", "position", "subject", "timing", "delay_amount", "delay_unit", "is_active")
    list_filter = ("is_active", "timing", "sequence")
    search_fields = ("subject", "name", "sequence__name")
    list_select_related = ("sequence",)
    actions = ["pause_steps", "resume_steps"]

    @admin.action(description="Pause (subscribers skip these steps)")
    def pause_steps(self, request, queryset):
        self._set_active(request, queryset, False)

    @admin.action(description="Resume")
    def resume_steps(self, request, queryset):
        self._set_active(request, queryset, True)

    def _set_active(self, request, queryset, is_active):
        steps = list(queryset.select_related("sequence"))
        for step in steps:
            sequences.set_step_active(step, is_active)
        self.message_user(request, f"{len(steps)} step(s) {'resumed' if is_active else 'paused'}.", messages.SUCCESS)

    def delete_model(self, request, obj):
        sequences.delete_step(obj)

    def delete_queryset(self, request, queryset):
        for step in queryset:
            sequences.delete_step(step)


@admin.register(Enrollment)
class EnrollmentAdmin(admin.ModelAdmin):
    list_display = ("subscriber", "sequence", "status", "exit_reason", "entry", "position", "next_step_at",
                    "entered_at", "ended_at")
    list_filter = ("status", "exit_reason", "sequence")
    search_fields = ("subscriber__email", "sequence__name")
    list_select_related = ("subscriber", "sequence")
    raw_id_fields = ("subscriber",)
    readonly_fields = ("sequence", "subscriber", "status", "exit_reason", "source", "entry", "position", "last_step",
                       "last_step_at", "next_step", "next_step_at", "trigger_ref", "entered_at", "ended_at")
    actions = ["remove"]

    def has_add_permission(self, request):
        return False  # enrollments come from triggers, the dashboard or the API (campaigns.sequences.enroll)

    @admin.action(description="Remove from the sequence (queued mail is cancelled)")
    def remove(self, request, queryset):
        removed = sum(sequences.remove(e.sequence, e.subscriber) for e in queryset.select_related("sequence"))
        self.message_user(request, f"{removed} subscriber(s) removed.", messages.SUCCESS if removed else messages.WARNING)
