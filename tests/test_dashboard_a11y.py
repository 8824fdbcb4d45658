"""
Keyboard, screen-reader and phone basics on every dashboard page, in Chromium
at a phone's width (390 px): one <h1>, a language, every form control with a
label (or aria-label), every image with alt text, every button with a name, and
nothing wider than the screen (wide tables scroll inside .table-wrap). The
pages come from the URL resolver, like the role matrix, so a new page is checked
without being listed; the console must stay clean (tests.browser).
"""

import pytest
from django.urls import reverse

from tests.browser import sign_in
from tests.conftest import PASSWORD
from tests.test_role_matrix import OWNER, ROLES, _build_world, _kwargs, dashboard_patterns, with_outbox_message

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

PROBLEMS = """() => {
  const problems = [];
  const named = (el) => (el.labels && el.labels.length) || el.getAttribute('aria-label')
    || el.getAttribute('aria-labelledby') || el.title;
  if (!document.documentElement.lang) problems.push('no lang on <html>');
  const h1 = document.querySelectorAll('h1').length;
  if (h1 !== 1) problems.push(h1 + ' <h1> elements');
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (['hidden', 'submit', 'button', 'reset'].includes(el.type) || el.hidden) continue;
    if (!named(el)) problems.push('unlabelled ' + el.tagName.toLowerCase() + ' name=' + el.name);
  }
  for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) problems.push('img without alt');
  for (const b of document.querySelectorAll('button')) {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('button without a name');
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) {
    problems.push('wider than the screen: ' + document.documentElement.scrollWidth + 'px');
  }
  return problems;
}"""


def _pages(ids, client):
    """The owner's HTML pages: POST-only views (405), downloads and previews are left out."""
    for name, route in dashboard_patterns():
        if ROLES.get(name) in (None, "outside") or "<str:token>" in route:
            continue
        url = reverse(name, kwargs=_kwargs(route, ids))
        response = client.get(url)
        # whole pages only: htmx partials and the sandboxed previews are parts of other pages
        if response.status_code == 200 and response["Content-Type"].startswith("text/html") \
                and b'<main id="main"' in response.content:
            yield url


def test_every_page_has_labels_one_heading_and_fits_a_phone(page, live_server, client_class):
    ids, users = _build_world()
    ids = with_outbox_message(ids)
    client = client_class()
    client.force_login(users[OWNER])
    urls = list(_pages(ids, client))
    page.set_viewport_size({"width": 390, "height": 844})
    sign_in(page, live_server, "alice", PASSWORD)
    found, checked = {}, []
    for url in urls:
        page.goto(live_server.url + url)
        checked.append(url)
        problems = page.evaluate(PROBLEMS)
        if problems:
            found[url] = problems
    assert len(checked) > 40
    assert not found, "\n".join(f"{url}: {', '.join(problems)}" for url, problems in found.items())
