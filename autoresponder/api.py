"""
The REST API's address book: every resource under /api/v1/, the OpenAPI 3
schema at /api/schema/ and the interactive documentation at /api/docs/.

The documentation page is Swagger UI served from our own static files
(drf-spectacular-sidecar, no CDN), in the "split" form whose start-up script is
a separate request, so it runs under the app's Content-Security-Policy, which
forbids inline scripts (see templates/api/docs.html).

Building blocks (roles, paging, throttling, errors) are in api_base.py; each
app's resources in lists/api.py and campaigns/api*.py.
"""

from django.http import JsonResponse
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import DefaultRouter

from campaigns import api as campaigns_api
from campaigns import api_hooks, api_sequences
from lists import api as lists_api

router = DefaultRouter()
router.include_root_view = False
router.register("lists", lists_api.MailingListViewSet, basename="list")
router.register("subscribers", lists_api.SubscriberViewSet, basename="subscriber")
router.register("subscriptions", lists_api.SubscriptionViewSet, basename="subscription")
router.register("tags", lists_api.TagViewSet, basename="tag")
router.register("segments", lists_api.SegmentViewSet, basename="segment")
router.register("suppressions", lists_api.SuppressionViewSet, basename="suppression")
campaigns_api.register(router)
api_sequences.register(router)
router.register("hooks", api_hooks.HookViewSet, basename="hook")

app_name = "api"
urlpatterns = [
    path("v1/", include(router.urls)),
    path("v1/unsubscribe/", lists_api.UnsubscribeView.as_view(), name="unsubscribe"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema", template_name="api/docs.html"),
         name="docs"),
    # Anything else under /api/ (an unknown path, an id that is not a number) is a JSON 404, as API
    # clients expect, not the dashboard's HTML page.
    re_path(r"^", csrf_exempt(lambda request: JsonResponse({"detail": "Not found: no such API address."}, status=404))),
]
