from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns and sending"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # lists announces its events to a registry (lists.events), never importing campaigns;
        # REST hooks subscribe to it here.
        from .hooks import listen_to_lists

        listen_to_lists()
        # Sequences enroll a newly confirmed subscriber at once (a prompt welcome mail).
        from .sequences import listen_to_lists as enroll_on_confirmation

        enroll_on_confirmation()
        # ESP webhooks: connects the receiver of anymail's `tracking` signal.
        from . import webhooks  # noqa: F401
        # Registers the pre-send check "From domain authenticated" (campaigns.presend).
        from . import domain_checks  # noqa: F401
