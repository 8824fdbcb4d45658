"""The dashboard's navigation. An entry appears once its page exists and the user's role may see it."""

from django.urls import NoReverseMatch, reverse

from .roles import has_role, role_of

ENTRIES = (
    ("Overview", "home", "viewer"),
    ("Lists", "lists:list_index", "viewer"),
    ("Subscribers", "lists:subscriber_index", "viewer"),
    ("Segments", "lists:segment_index", "viewer"),
    ("Sequences", "campaigns:sequence_index", "viewer"),
    ("Broadcasts", "campaigns:broadcast_index", "viewer"),
    ("Templates", "campaigns:template_index", "viewer"),
    ("Sending", "campaigns:backend_index", "viewer"),
    ("Domains", "campaigns:domain_index", "viewer"),
    ("Outbox", "outbox", "viewer"),
    ("API", "api_tokens", "viewer"),
    ("Settings", "settings", "viewer"),
    ("Users", "user_index", "owner"),
)


def _resolve(name):
    try:
        return reverse(name)
    except NoReverseMatch:
        return None


def navigation(request):
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav": [], "user_role": None}
    path = request.path
    nav = []
    for label, name, role in ENTRIES:
        url = _resolve(name)
        if url and has_role(user, role):
            active = path == url if url == "/" else path.startswith(url)
            nav.append({"label": label, "url": url, "active": active})
    # One entry is current: the longest match (/sending/domains/ is Domains, not Sending).
    current = max((item for item in nav if item["active"]), key=lambda item: len(item["url"]), default=None)
    for item in nav:
        item["active"] = item is current
    return {"nav": nav, "user_role": role_of(user)}
