from django.urls import path

from . import tracking

app_name = "campaigns"
urlpatterns = [
    # Public per-message endpoints; composing.py writes these paths into every message.
    path("u/<str:token>", tracking.unsubscribe, name="unsubscribe"),
    path("c/<str:token>", tracking.click, name="click"),
    path("o/<str:token>.gif", tracking.open_pixel, name="open_pixel"),
    path("v/<str:token>", tracking.view_in_browser, name="view_in_browser"),
]
