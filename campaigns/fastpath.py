"""
The open pixel and the click redirect, answered in front of Django.

These two URLs take most of the traffic an installation ever sees (every
opened message loads the pixel; scanners fetch every link), and all they do is
check a token, note the hit and answer a fixed response. Django's middleware
stack (sessions, CSRF, auth, messages, CSP, whitenoise) costs several times the
work itself: measured on the 2-core test machine, gunicorn served the pixel
through Django at ~0.3× the rate of a bare WSGI app returning the same GIF
(see BENCHMARKS.md, "Track"). So `TrackingFastPath` wraps the WSGI application
(autoresponder/wsgi.py) and answers the ordinary case itself — a valid open
token, or a valid click token naming a stored link — with exactly what the
Django views (campaigns.tracking) would answer. Anything else (a bad click
token, an unknown link, a database hiccup, other methods) goes on to Django,
so errors are rendered and logged in one place. Both paths record through
campaigns.events.hit().
"""

import logging
from urllib.parse import urlsplit

from django.db import DatabaseError, connection
from django.utils.encoding import iri_to_uri

from autoresponder import tokens

from . import composing, events
from .models import Link

log = logging.getLogger(__name__)

_PIXEL_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
    ("X-Content-Type-Options", "nosniff"),
    ("Content-Security-Policy", "default-src 'none'"),
]
_LINK_CACHE_LIMIT = 10_000
_link_urls = {}  # Link pk -> Location header value; a Link never changes once stored


def pixel():
    from .tracking import PIXEL

    return PIXEL


class TrackingFastPath:
    """WSGI middleware: GET/HEAD /o/<token>.gif and /c/<token> without Django's stack."""

    def __init__(self, application):
        self.application = application
        self.pixel = pixel()
        self.pixel_headers = _PIXEL_HEADERS + [("Content-Length", str(len(self.pixel)))]

    def __call__(self, environ, start_response):
        method = environ.get("REQUEST_METHOD", "")
        path = environ.get("PATH_INFO", "")
        if method in ("GET", "HEAD"):
            if path.startswith("/o/") and path.endswith(".gif"):
                return self._open(environ, start_response, path[3:-4], head=method == "HEAD")
            if path.startswith("/c/"):
                answer = self._click(environ, start_response, path[3:], head=method == "HEAD")
                if answer is not None:
                    return answer
        return self.application(environ, start_response)

    def _open(self, environ, start_response, token, *, head):
        message_pk = _single(composing.OPEN, token)
        if message_pk is not None:
            try:
                events.hit(events.Event.OPEN, message_pk, head=head, user_agent=environ.get("HTTP_USER_AGENT", ""))
            except Exception:  # noqa: BLE001 - the image is always returned (issue: "even when recording fails")
                log.exception("Could not record an open of message %s.", message_pk)
        start_response("200 OK", self.pixel_headers)
        return [] if head else [self.pixel]

    def _click(self, environ, start_response, token, *, head):
        try:
            values = tokens.unsign(composing.CLICK, token)
        except tokens.BadToken:
            return None
        if len(values) != 2:
            return None
        location = redirect_location(values[1])
        if location is None:
            return None  # Django answers: 404 for an unknown link, 400 for a URL it will not redirect to
        try:
            events.hit(events.Event.CLICK, values[0], values[1], head=head,
                       user_agent=environ.get("HTTP_USER_AGENT", ""))
        except Exception:  # noqa: BLE001 - let Django's view try (and log) instead
            log.exception("Could not record a click of message %s.", values[0])
            return None
        start_response("302 Found", [
            ("Location", location), ("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "0"),
            ("Cache-Control", "max-age=0, no-cache, no-store, must-revalidate, private"),
            ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"), ("Referrer-Policy", "same-origin"),
            ("X-Content-Type-Options", "nosniff"),
        ])
        return []


def _single(purpose, token):
    try:
        values = tokens.unsign(purpose, token)
    except tokens.BadToken:
        return None
    return values[0] if len(values) == 1 else None


def redirect_location(link_pk):
    """The Location header for a stored Link, cached per process; None when there is no such link
    or its URL is not one to redirect to."""
    location = _link_urls.get(link_pk)
    if location is None:
        try:
            url = Link.objects.filter(pk=link_pk).values_list("url", flat=True).first()
        except DatabaseError:
            connection.close()  # Django's own request handling reconnects
            return None
        if url is None or not _redirectable(url):
            return None
        if len(_link_urls) >= _LINK_CACHE_LIMIT:
            _link_urls.clear()
        location = _link_urls[link_pk] = iri_to_uri(url)
    return location


def _redirectable(url):
    """What Django's HttpResponseRedirect accepts, and nothing that could split a header."""
    return urlsplit(url).scheme in ("http", "https") and not any(ord(ch) < 32 or ord(ch) == 127 for ch in url)
