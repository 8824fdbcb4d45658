from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from . import views, views_tokens, views_twofactor, views_users
from .roles import role_required

admin.site.site_header = "Autoresponder administration"
admin.site.site_title = "Autoresponder admin"

urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/login/code/", views_twofactor.login_code, name="login_code"),
    path("accounts/reset/<uidb64>/<token>/", auth_views.PasswordResetConfirmView.as_view(
        template_name="registration/set_password.html", success_url="/accounts/reset/done/",
    ), name="password_reset_confirm"),
    path("accounts/reset/done/", auth_views.PasswordResetCompleteView.as_view(
        template_name="registration/set_password_done.html"), name="password_reset_complete"),
    # The admin signs in through ours, so two-factor sign-in and its rate limits hold there too.
    path("admin/login/", RedirectView.as_view(pattern_name="login", query_string=True), name="admin_login"),
    path("account/", views_twofactor.account_index, name="account"),
    path("account/password/", role_required("viewer")(auth_views.PasswordChangeView.as_view(
        template_name="account/password.html", success_url="/account/",
    )), name="password_change"),
    path("account/two-factor/start/", views_twofactor.twofactor_start, name="twofactor_start"),
    path("account/two-factor/", views_twofactor.twofactor_setup, name="twofactor_setup"),
    path("account/two-factor/recovery-codes/", views_twofactor.twofactor_recovery, name="twofactor_recovery"),
    path("account/two-factor/off/", views_twofactor.twofactor_disable, name="twofactor_disable"),
    path("users/", views_users.user_index, name="user_index"),
    path("users/new/", views_users.user_create, name="user_create"),
    path("users/<int:pk>/", views_users.user_detail, name="user_detail"),
    path("users/<int:pk>/role/", views_users.user_role, name="user_role"),
    path("users/<int:pk>/access/", views_users.user_access, name="user_access"),
    path("users/<int:pk>/deactivate/", views_users.user_deactivate, name="user_deactivate"),
    path("users/<int:pk>/activate/", views_users.user_activate, name="user_activate"),
    path("users/<int:pk>/two-factor/reset/", views_users.user_twofactor_reset, name="user_twofactor_reset"),
    path("outbox/", views.outbox_index, name="outbox"),
    path("outbox/<str:name>/", views.outbox_detail, name="outbox_detail"),
    path("outbox/<str:name>/html/", views.outbox_html, name="outbox_html"),
    path("healthz", views.healthz, name="healthz"),
    # ESP tracking webhooks (django-anymail; events land in campaigns.webhooks).
    path("webhooks/anymail/", include("anymail.urls")),
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
