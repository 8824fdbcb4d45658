from django.urls import path

from . import tracking, views_policy, views_sunset
from . import views_hooks as rest_hooks
from . import views_broadcasts as broadcasts
from . import views_domains as domains
from . import views_preview as previews
from . import views_sending as sending
from . import views_sequences as sequences
from . import views_settings as senders
from . import views_templates as templates

app_name = "campaigns"
urlpatterns = [
    # Public per-message endpoints; composing.py writes these paths into every message.
    path("u/<str:token>", tracking.unsubscribe, name="unsubscribe"),
    path("c/<str:token>", tracking.click, name="click"),
    path("o/<str:token>.gif", tracking.open_pixel, name="open_pixel"),
    path("v/<str:token>", tracking.view_in_browser, name="view_in_browser"),
    # Dashboard: broadcasts
    path("broadcasts/", broadcasts.broadcast_index, name="broadcast_index"),
    path("broadcasts/new/", broadcasts.broadcast_create, name="broadcast_create"),
    path("broadcasts/compose/preview/", broadcasts.compose_preview, name="compose_preview"),
    path("broadcasts/compose/test/", broadcasts.compose_test, name="compose_test"),
    path("broadcasts/compose/count/", broadcasts.compose_count, name="compose_count"),
    path("broadcasts/compose/check/", broadcasts.compose_presend, name="compose_presend"),
    path("broadcasts/<int:pk>/", broadcasts.broadcast_detail, name="broadcast_detail"),
    path("broadcasts/<int:pk>/edit/", broadcasts.broadcast_edit, name="broadcast_edit"),
    path("broadcasts/<int:pk>/delete/", broadcasts.broadcast_delete, name="broadcast_delete"),
    path("broadcasts/<int:pk>/preview/", broadcasts.broadcast_preview, name="broadcast_preview"),
    path("broadcasts/<int:pk>/test/", broadcasts.broadcast_test, name="broadcast_test"),
    path("broadcasts/<int:pk>/send/", broadcasts.broadcast_send, name="broadcast_send"),
    path("broadcasts/<int:pk>/count/", broadcasts.broadcast_count, name="broadcast_count"),
    path("broadcasts/<int:pk>/schedule/", broadcasts.broadcast_schedule, name="broadcast_schedule"),
    path("broadcasts/<int:pk>/unschedule/", broadcasts.broadcast_unschedule, name="broadcast_unschedule"),
    path("broadcasts/<int:pk>/pause/", broadcasts.broadcast_pause, name="broadcast_pause"),
    path("broadcasts/<int:pk>/resume/", broadcasts.broadcast_resume, name="broadcast_resume"),
    path("broadcasts/<int:pk>/cancel/", broadcasts.broadcast_cancel, name="broadcast_cancel"),
    path("broadcasts/<int:pk>/progress/", broadcasts.broadcast_progress, name="broadcast_progress"),
    # Dashboard: sequences
    path("sequences/", sequences.sequence_index, name="sequence_index"),
    path("sequences/new/", sequences.sequence_create, name="sequence_create"),
    path("sequences/<int:pk>/", sequences.sequence_detail, name="sequence_detail"),
    path("sequences/<int:pk>/figures/", sequences.sequence_figures, name="sequence_figures"),
    path("sequences/<int:pk>/edit/", sequences.sequence_edit, name="sequence_edit"),
    path("sequences/<int:pk>/delete/", sequences.sequence_delete, name="sequence_delete"),
    path("sequences/<int:pk>/enable/", sequences.sequence_enable, name="sequence_enable"),
    path("sequences/<int:pk>/pause/", sequences.sequence_pause, name="sequence_pause"),
    path("sequences/<int:pk>/resume/", sequences.sequence_resume, name="sequence_resume"),
    path("sequences/<int:pk>/enroll/", sequences.sequence_enroll, name="sequence_enroll"),
    path("sequences/<int:pk>/remove/", sequences.sequence_remove, name="sequence_remove"),
    path("sequences/<int:pk>/steps/new/", sequences.step_create, name="step_create"),
    path("sequences/<int:pk>/steps/preview/", sequences.step_preview, name="step_preview"),
    path("sequences/<int:pk>/steps/test/", sequences.step_test, name="step_test"),
    path("sequences/<int:pk>/steps/check/", sequences.step_presend, name="step_presend"),
    path("sequences/<int:pk>/steps/<int:step_pk>/", sequences.step_edit, name="step_edit"),
    path("sequences/<int:pk>/steps/<int:step_pk>/move/", sequences.step_move, name="step_move"),
    path("sequences/<int:pk>/steps/<int:step_pk>/toggle/", sequences.step_toggle, name="step_toggle"),
    path("sequences/<int:pk>/steps/<int:step_pk>/delete/", sequences.step_delete, name="step_delete"),
    # Dashboard: templates and layouts
    path("templates/", templates.template_index, name="template_index"),
    path("templates/new/", templates.template_form, name="template_create"),
    path("templates/compose/preview/", templates.template_draft_preview, name="template_draft_preview"),
    path("templates/compose/test/", templates.template_draft_test, name="template_draft_test"),
    path("templates/<int:pk>/", templates.template_detail, name="template_detail"),
    path("templates/<int:pk>/edit/", templates.template_form, name="template_edit"),
    path("templates/<int:pk>/delete/", templates.template_delete, name="template_delete"),
    path("templates/<int:pk>/preview/", templates.template_preview, name="template_preview"),
    path("templates/<int:pk>/test/", templates.template_test, name="template_test"),
    path("templates/layouts/new/", templates.layout_form, name="layout_create"),
    path("templates/layouts/preview/", templates.layout_draft_preview, name="layout_draft_preview"),
    path("templates/layouts/<int:pk>/edit/", templates.layout_form, name="layout_edit"),
    path("templates/layouts/<int:pk>/delete/", templates.layout_delete, name="layout_delete"),
    # Dashboard: previews in a sandboxed iframe, the subscriber picker
    path("previews/subscribers/", previews.subscriber_options, name="subscriber_options"),
    path("previews/<str:token>/", previews.preview_html, name="preview_html"),
    # Dashboard: sending backends
    path("sending/", sending.backend_index, name="backend_index"),
    path("sending/new/", sending.backend_kind, name="backend_kind"),
    path("sending/new/<str:kind>/", sending.backend_create, name="backend_create"),
    path("sending/<int:pk>/", sending.backend_detail, name="backend_detail"),
    path("sending/<int:pk>/edit/", sending.backend_edit, name="backend_edit"),
    path("sending/<int:pk>/test/", sending.backend_test, name="backend_test"),
    path("sending/<int:pk>/toggle/", sending.backend_toggle, name="backend_toggle"),
    path("sending/<int:pk>/delete/", sending.backend_delete, name="backend_delete"),
    # Dashboard: sending domains (DKIM keys, DNS records and their checks)
    path("sending/domains/", domains.domain_index, name="domain_index"),
    path("sending/domains/new/", domains.domain_create, name="domain_create"),
    path("sending/domains/<int:pk>/", domains.domain_detail, name="domain_detail"),
    path("sending/domains/<int:pk>/edit/", domains.domain_edit, name="domain_edit"),
    path("sending/domains/<int:pk>/check/", domains.domain_check, name="domain_check"),
    path("sending/domains/<int:pk>/rotate/", domains.domain_rotate, name="domain_rotate"),
    path("sending/domains/<int:pk>/ed25519/", domains.domain_add_ed25519, name="domain_add_ed25519"),
    path("sending/domains/<int:pk>/keys/<int:key_pk>/forget/", domains.key_forget, name="domain_key_forget"),
    path("sending/domains/<int:pk>/delete/", domains.domain_delete, name="domain_delete"),
    # Dashboard: sender identities (listed on the settings page, `settings` in urls_global.py)
    path("settings/bounces/", views_policy.bounce_policy, name="bounce_policy"),
    path("settings/sunset/", views_sunset.sunset_policy, name="sunset_policy"),
    path("settings/sunset/count/", views_sunset.sunset_count, name="sunset_count"),
    path("settings/sunset/run/", views_sunset.sunset_run, name="sunset_run"),
    path("settings/sunset/runs/<str:job_id>/", views_sunset.sunset_job, name="sunset_job"),
    path("settings/senders/new/", senders.sender_form, name="sender_create"),
    path("settings/senders/<int:pk>/edit/", senders.sender_form, name="sender_edit"),
    path("settings/senders/<int:pk>/delete/", senders.sender_delete, name="sender_delete"),
    # Dashboard: REST hooks (admins)
    path("hooks/", rest_hooks.hook_index, name="hook_index"),
    path("hooks/<int:pk>/", rest_hooks.hook_detail, name="hook_detail"),
    path("hooks/<int:pk>/toggle/", rest_hooks.hook_toggle, name="hook_toggle"),
    path("hooks/<int:pk>/secret/", rest_hooks.hook_secret, name="hook_secret"),
    path("hooks/<int:pk>/delete/", rest_hooks.hook_delete, name="hook_delete"),
    path("hooks/deliveries/<int:pk>/retry/", rest_hooks.delivery_retry, name="hook_delivery_retry"),
]
