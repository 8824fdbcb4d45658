"""The API documentation page in a real browser: Swagger UI from our static files, under the app's CSP."""

import pytest

from tests.browser import sign_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_api_docs_render_under_the_csp_without_console_errors(page, live_server, bob):
    # given a signed-in editor (the docs send her session and CSRF token with "Try it out")
    sign_in(page, live_server, "bob", PASSWORD)
    requested = []
    page.on("request", lambda request: requested.append(request.url))

    # when
    response = page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .information-container .title")

    # then the page kept the strict policy, nothing came from another host, and the operations are listed
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy.split("style-src")[0]
    assert all(url.startswith(live_server.url) or url.startswith("data:") for url in requested), requested
    assert "Autoresponder API" in page.locator(".swagger-ui .information-container .title").inner_text()
    page.get_by_text("/api/v1/subscribers/bulk/").first.wait_for()


def test_api_docs_try_it_out_uses_the_session(page, live_server, bob):
    sign_in(page, live_server, "bob", PASSWORD)
    page.goto(f"{live_server.url}/api/docs/")
    operation = page.locator("#operations-lists-lists_list")
    operation.locator(".opblock-summary").click()
    operation.get_by_role("button", name="Try it out").click()
    operation.get_by_role("button", name="Execute").click()

    status = operation.locator(".live-responses-table tbody .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
