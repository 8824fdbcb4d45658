from django.apps import AppConfig


class AutoresponderConfig(AppConfig):
    name = "autoresponder"
    verbose_name = "Autoresponder"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
