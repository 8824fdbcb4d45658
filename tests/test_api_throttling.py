"""Per-token throttling, counted in the shared cache (Redis) by scope: read, write, bulk."""

import pytest

from tests.api_fixtures import *  # noqa: F401,F403
from tests.factories import MailingListFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def low_rates(settings):
    # Day-long windows: a test never straddles a window's end (the counters are fixed windows).
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"read": "3/day", "write": "2/day", "bulk": "1/day"}}


def test_a_token_past_its_read_rate_gets_429_with_retry_after(low_rates, viewer_api):
    statuses = [viewer_api.get("/api/v1/lists/").status_code for _ in range(4)]
    refused = viewer_api.get("/api/v1/lists/")

    assert statuses == [200, 200, 200, 429]
    assert refused.status_code == 429
    assert 0 < int(refused.headers["Retry-After"]) <= 86400
    assert "throttled" in refused.json()["detail"].lower()


def test_each_token_has_its_own_budget(low_rates, viewer_api, editor_api):
    for _ in range(3):
        viewer_api.get("/api/v1/lists/")

    assert viewer_api.get("/api/v1/lists/").status_code == 429
    assert editor_api.get("/api/v1/lists/").status_code == 200


def test_writes_and_bulk_requests_have_their_own_scopes(low_rates, editor_api):
    mailing_list = MailingListFactory()
    writes = [editor_api.post("/api/v1/tags/", {"name": f"t{n}"}, format="json").status_code for n in range(3)]
    bulk = [editor_api.post("/api/v1/subscribers/bulk/", {
        "list": mailing_list.pk, "subscribers": [{"email": f"b{n}@example.org"}]}, format="json").status_code
        for n in range(2)]

    assert writes == [201, 201, 429]
    assert bulk == [200, 429]
    assert editor_api.get("/api/v1/tags/").status_code == 200
