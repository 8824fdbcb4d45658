from django.urls import path

from . import public, views, views_bulk, views_transfer

app_name = "lists"
urlpatterns = [
    # Dashboard
    path("lists/", views.list_index, name="list_index"),
    path("lists/new/", views.list_create, name="list_create"),
    path("lists/<int:pk>/", views.list_detail, name="list_detail"),
    path("lists/<int:pk>/edit/", views.list_edit, name="list_edit"),
    path("lists/<int:pk>/delete/", views.list_delete, name="list_delete"),
    path("lists/<int:pk>/add/", views.list_add_subscriber, name="list_add_subscriber"),
    path("subscribers/", views.subscriber_index, name="subscriber_index"),
    path("subscribers/<int:pk>/", views.subscriber_detail, name="subscriber_detail"),
    path("subscribers/<int:pk>/edit/", views.subscriber_edit, name="subscriber_edit"),
    path("subscribers/<int:pk>/unsubscribe/", views.subscriber_unsubscribe, name="subscriber_unsubscribe"),
    path("subscribers/<int:pk>/tag/", views.subscriber_tag, name="subscriber_tag"),
    path("subscribers/<int:pk>/untag/", views.subscriber_untag, name="subscriber_untag"),
    path("subscribers/<int:pk>/delete/", views.subscriber_delete, name="subscriber_delete"),
    path("subscribers/<int:pk>/wipe/", views.subscriber_wipe, name="subscriber_wipe"),
    path("subscribers/<int:pk>/export/", views.subscriber_export, name="subscriber_export"),
    path("subscribers/bulk/", views_bulk.subscriber_bulk, name="subscriber_bulk"),
    path("subscribers/bulk/<str:job_id>/", views_bulk.subscriber_bulk_job, name="subscriber_bulk_job"),
    # Import, export, segments (lists.views_transfer)
    path("lists/<int:pk>/import/", views_transfer.import_start, name="import_start"),
    path("imports/<int:pk>/", views_transfer.import_detail, name="import_detail"),
    path("imports/<int:pk>/problems.csv", views_transfer.import_errors, name="import_errors"),
    path("lists/<int:pk>/export.csv", views_transfer.export_list, name="export_list"),
    path("subscribers/export.csv", views_transfer.export_search, name="export_search"),
    path("segments/", views_transfer.segment_index, name="segment_index"),
    path("segments/new/", views_transfer.segment_create, name="segment_create"),
    path("segments/<int:pk>/", views_transfer.segment_edit, name="segment_edit"),
    path("segments/<int:pk>/delete/", views_transfer.segment_delete, name="segment_delete"),
    # Public pages (no sign-in; lists by public uuid, people by signed token)
    path("s/<uuid:public_id>/", public.signup, name="public_signup"),
    path("s/<uuid:public_id>/embed", public.signup_embed, name="public_signup_embed"),
    path("s/<uuid:public_id>/json", public.signup_json, name="public_signup_json"),
    path("s/<uuid:public_id>/style.css", public.list_stylesheet, name="public_list_css"),
    path("c/<str:token>/", public.confirm, name="public_confirm"),
    path("p/<str:token>/", public.preferences, name="public_preferences"),
]
