from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from . import views, views_tokens

admin.site.site_header = "Autoresponder administration"
admin.site.site_title = "Autoresponder admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("outbox/", views.outbox_index, name="outbox"),
    path("outbox/<str:name>/", views.outbox_detail, name="outbox_detail"),
    path("outbox/<str:name>/html/", views.outbox_html, name="outbox_html"),
    path("healthz", views.healthz, name="healthz"),
    path("favicon.ico", RedirectView.as_view(url="/static/favicon.svg", permanent=True)),
    path("admin/", admin.site.urls),
    path("api/", include("autoresponder.api")),
    path("account/api/", views_tokens.token_index, name="api_tokens"),
    path("account/api/token/", views_tokens.token_create, name="api_token_create"),
    path("account/api/token/revoke/", views_tokens.token_revoke, name="api_token_revoke"),
    path("", include("lists.urls")),
    path("", include("campaigns.urls")),
    path("", include("campaigns.urls_global")),
]

handler403 = "autoresponder.views.permission_denied"
