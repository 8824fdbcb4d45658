"""
Sections that one app shows on another's pages. Each app may offer a
`dashboard_sections(request)` function in its `overview` module (the overview
page) and a `subscriber_sections(request, subscriber)` function in its
`activity` module (a subscriber's page, e.g. the messages and events campaigns
holds about them). The pages show what they return without importing the apps
directly, so the dependency arrow stays one-way: lists never imports campaigns.
"""

from importlib import import_module

APPS = ("lists", "campaigns")


def _collect(module_name, function_name, *args):
    found = []
    for app in APPS:
        try:
            module = import_module(f"{app}.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{app}.{module_name}":
                raise
            continue
        found.extend(getattr(module, function_name)(*args))
    return found


def sections(request):
    """The overview page's sections: [{"template", "data"}]."""
    return _collect("overview", "dashboard_sections", request)


def subscriber_sections(request, subscriber):
    """Sections for a subscriber's page from the other apps: [{"template", "data"}]."""
    return _collect("activity", "subscriber_sections", request, subscriber)
