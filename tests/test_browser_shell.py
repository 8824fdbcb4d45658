"""The dashboard shell in a real browser: scripts load under the strict CSP, nothing errors."""

import pytest

from tests.browser import sign_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_alice_signs_in_in_a_browser_and_sees_the_overview(page, live_server, alice):
    sign_in(page, live_server, "alice", PASSWORD)

    assert page.locator("h1").inner_text() == "Overview"
    nav = page.get_by_role("navigation", name="Main")
    assert nav.get_by_role("link", name="Overview").get_attribute("aria-current") == "page"
    # htmx and Alpine loaded from /static/ despite script-src 'self'
    assert page.evaluate("typeof window.htmx") == "object"
    assert page.evaluate("typeof window.Alpine") == "object"


def test_a_wrong_password_shows_the_error_in_the_browser(page, live_server, alice):
    sign_in(page, live_server, "alice", "not her password")
    assert "Please enter a correct username and password" in page.locator("[role=alert]").inner_text()


def test_sign_out_returns_to_the_login_page(page, live_server, alice):
    sign_in(page, live_server, "alice", PASSWORD)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{live_server.url}/accounts/login/")
    assert page.locator("h1").inner_text() == "Sign in to Autoresponder"
