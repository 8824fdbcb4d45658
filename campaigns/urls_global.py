"""Dashboard pages under un-namespaced names that the navigation expects (`settings`)."""

from django.urls import path

from . import views_settings

urlpatterns = [
    path("settings/", views_settings.settings_index, name="settings"),
]
