"""
The role matrix, view by view: every URL pattern of the dashboard, resolved from
Django's URL resolver with real ids, asked with GET and POST by anonymous,
mallory (no role), victor (viewer), bob (editor), carol (admin) and alice
(owner). Each pattern must have an entry in ROLES below, so a new view without
one fails test_every_url_pattern_is_declared.

"Denied" means a redirect to sign-in for the anonymous visitor and 403 for a
signed-in user below the view's role; a denied POST must leave every row of
every table as it was. "Allowed" means neither (200, a redirect elsewhere, 400
on an empty form, 404 for a token that names nothing, 405 for a method the view
does not take: the role check comes first).
"""

import hashlib
import uuid
from datetime import timedelta

import pytest
from django.apps import apps
from django.core import mail
from django.core.management import call_command
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from autoresponder import outbox
from autoresponder.outbox import OutboxBackend
from autoresponder.roles import grant
from lists.models import ImportJob, Segment
from tests.conftest import PASSWORD
from tests.dns_server import dns_server  # noqa: F401
from tests.factories import MailingListFactory, SubscriberFactory, SubscriptionFactory, UserFactory
from tests.sending_factories import BroadcastFactory, SenderFactory, SMTPBackendFactory

pytestmark = pytest.mark.django_db

# Not dashboard pages: public pages (signed tokens), sign-in, the REST API (its own role
# matrix: tests/test_api_roles.py) and the Django admin (staff only, Django's own checks).
OUTSIDE = "outside"
VIEWER, EDITOR, ADMIN, OWNER = "viewer", "editor", "admin", "owner"

ROLES = {
    # The shell, the account, users
    "home": VIEWER, "outbox": VIEWER, "outbox_detail": VIEWER, "outbox_html": VIEWER,
    "account": VIEWER, "password_change": VIEWER, "twofactor_start": VIEWER, "twofactor_setup": VIEWER,
    "twofactor_recovery": VIEWER, "twofactor_disable": VIEWER,
    "api_tokens": VIEWER, "api_token_create": VIEWER, "api_token_revoke": VIEWER,
    "user_index": OWNER, "user_create": OWNER, "user_detail": OWNER, "user_role": OWNER, "user_access": OWNER,
    "user_deactivate": OWNER, "user_activate": OWNER, "user_twofactor_reset": OWNER,
    "settings": VIEWER,
    # Lists and subscribers
    "lists:list_index": VIEWER, "lists:list_detail": VIEWER, "lists:list_create": EDITOR, "lists:list_edit": EDITOR,
    "lists:list_delete": EDITOR, "lists:list_add_subscriber": EDITOR,
    "lists:subscriber_index": VIEWER, "lists:subscriber_detail": VIEWER, "lists:subscriber_edit": EDITOR,
    "lists:subscriber_unsubscribe": EDITOR, "lists:subscriber_tag": EDITOR, "lists:subscriber_untag": EDITOR,
    "lists:subscriber_delete": EDITOR, "lists:subscriber_wipe": EDITOR, "lists:subscriber_export": EDITOR,
    "lists:subscriber_bulk": EDITOR, "lists:subscriber_bulk_job": EDITOR,
    "lists:import_start": EDITOR, "lists:import_detail": EDITOR, "lists:import_errors": EDITOR,
    "lists:export_list": VIEWER, "lists:export_search": VIEWER,
    "lists:segment_index": VIEWER, "lists:segment_create": EDITOR, "lists:segment_edit": EDITOR,
    "lists:segment_delete": EDITOR,
    # Broadcasts, templates, previews
    "campaigns:broadcast_index": VIEWER, "campaigns:broadcast_detail": VIEWER, "campaigns:broadcast_preview": VIEWER,
    "campaigns:broadcast_progress": VIEWER, "campaigns:broadcast_create": EDITOR, "campaigns:broadcast_edit": EDITOR,
    "campaigns:broadcast_delete": EDITOR, "campaigns:broadcast_test": EDITOR, "campaigns:broadcast_send": EDITOR,
    "campaigns:broadcast_count": EDITOR,
    "campaigns:broadcast_schedule": EDITOR, "campaigns:broadcast_unschedule": EDITOR,
    "campaigns:broadcast_pause": EDITOR, "campaigns:broadcast_resume": EDITOR, "campaigns:broadcast_cancel": EDITOR,
    "campaigns:compose_preview": EDITOR, "campaigns:compose_test": EDITOR, "campaigns:compose_count": EDITOR,
    "campaigns:compose_presend": EDITOR,
    "campaigns:template_index": VIEWER, "campaigns:template_detail": VIEWER, "campaigns:template_preview": VIEWER,
    "campaigns:template_create": EDITOR, "campaigns:template_edit": EDITOR, "campaigns:template_delete": EDITOR,
    "campaigns:template_test": EDITOR, "campaigns:template_draft_preview": EDITOR,
    "campaigns:template_draft_test": EDITOR,
    "campaigns:layout_create": EDITOR, "campaigns:layout_edit": EDITOR, "campaigns:layout_delete": EDITOR,
    "campaigns:layout_draft_preview": EDITOR,
    "campaigns:subscriber_options": VIEWER, "campaigns:preview_html": VIEWER,
    # Sequences
    "campaigns:sequence_index": VIEWER, "campaigns:sequence_detail": VIEWER, "campaigns:sequence_figures": VIEWER,
    "campaigns:sequence_create": EDITOR, "campaigns:sequence_edit": EDITOR, "campaigns:sequence_delete": EDITOR,
    "campaigns:sequence_enable": EDITOR, "campaigns:sequence_pause": EDITOR, "campaigns:sequence_resume": EDITOR,
    "campaigns:sequence_enroll": EDITOR, "campaigns:sequence_remove": EDITOR,
    "campaigns:step_create": EDITOR, "campaigns:step_edit": EDITOR, "campaigns:step_preview": EDITOR,
    "campaigns:step_test": EDITOR, "campaigns:step_move": EDITOR, "campaigns:step_toggle": EDITOR,
    "campaigns:step_delete": EDITOR, "campaigns:step_presend": EDITOR,
    # Sending backends and sender identities: admins
    "campaigns:backend_index": VIEWER, "campaigns:backend_detail": VIEWER,
    "campaigns:backend_kind": ADMIN, "campaigns:backend_create": ADMIN, "campaigns:backend_edit": ADMIN,
    "campaigns:backend_test": ADMIN, "campaigns:backend_toggle": ADMIN, "campaigns:backend_delete": ADMIN,
    "campaigns:sender_create": ADMIN, "campaigns:sender_edit": ADMIN, "campaigns:sender_delete": ADMIN,
    "campaigns:bounce_policy": (VIEWER, ADMIN),  # everyone reads it, admins change it
    "campaigns:sunset_policy": (VIEWER, ADMIN), "campaigns:sunset_job": VIEWER, "campaigns:sunset_count": ADMIN,
    "campaigns:sunset_run": ADMIN,
    "campaigns:domain_index": VIEWER, "campaigns:domain_detail": VIEWER, "campaigns:domain_check": EDITOR,
    "campaigns:domain_create": ADMIN, "campaigns:domain_edit": ADMIN, "campaigns:domain_rotate": ADMIN,
    "campaigns:domain_add_ed25519": ADMIN, "campaigns:domain_key_forget": ADMIN, "campaigns:domain_delete": ADMIN,
    "campaigns:hook_index": ADMIN, "campaigns:hook_detail": ADMIN, "campaigns:hook_toggle": ADMIN,
    "campaigns:hook_secret": ADMIN, "campaigns:hook_delete": ADMIN, "campaigns:hook_delivery_retry": ADMIN,
    # Outside the dashboard
    "login": OUTSIDE, "logout": OUTSIDE, "login_code": OUTSIDE, "password_reset_confirm": OUTSIDE,
    "password_reset_complete": OUTSIDE, "admin_login": OUTSIDE, "healthz": OUTSIDE, "favicon": OUTSIDE,
    "lists:public_signup": OUTSIDE, "lists:public_signup_embed": OUTSIDE, "lists:public_signup_json": OUTSIDE,
    "lists:public_list_css": OUTSIDE, "lists:public_confirm": OUTSIDE, "lists:public_preferences": OUTSIDE,
    "campaigns:unsubscribe": OUTSIDE, "campaigns:click": OUTSIDE, "campaigns:open_pixel": OUTSIDE,
    "campaigns:view_in_browser": OUTSIDE,
}
OUTSIDE_PREFIXES = ("api/", "admin/", "webhooks/")  # webhooks: ESPs, authenticated by their own secrets
# Views that refuse a POST below their role with a message on the same page (a redirect back)
# instead of a 403; the refusal must still change nothing.
REFUSED_WITH_A_MESSAGE = {"campaigns:bounce_policy", "campaigns:sunset_policy"}
CAST = ("anonymous", "mallory", VIEWER, EDITOR, ADMIN, OWNER)  # weakest first


def _walk(patterns, prefix="", namespace=None):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace or namespace
            yield from _walk(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            name = pattern.name or ("favicon" if str(pattern.pattern) == "favicon.ico" else None)
            full = f"{namespace}:{name}" if namespace and name else name
            yield full, prefix + str(pattern.pattern)


def dashboard_patterns():
    return [(name, route) for name, route in _walk(get_resolver().url_patterns)
            if not route.startswith(OUTSIDE_PREFIXES)]


def test_every_url_pattern_is_declared():
    missing = sorted({name or route for name, route in dashboard_patterns() if name not in ROLES})
    assert not missing, (
        "Declare who may use these views in tests/test_role_matrix.py ROLES: " + ", ".join(missing))


# --- The world each request runs against ----------------------------------------------------------


def _member(username, role):
    user = UserFactory(username=username, password=PASSWORD)
    grant(user, role)
    return user


def _build_world():
    users = {"mallory": _member("mallory", None), VIEWER: _member("victor", VIEWER), EDITOR: _member("bob", EDITOR),
             ADMIN: _member("carol", ADMIN), OWNER: _member("alice", OWNER)}
    tess = _member("tess", EDITOR)
    subscription = SubscriptionFactory(mailing_list=MailingListFactory(name="Matrix list"))
    sender = SenderFactory()
    ids = {
        "lists": subscription.mailing_list_id, "subscribers": subscription.subscriber_id,
        "imports": ImportJob.objects.create(mailing_list=subscription.mailing_list, file="none.csv").pk,
        "segments": Segment.objects.create(name="Matrix segment", conditions=[]).pk,
        "broadcasts": BroadcastFactory(sender=sender, lists=[subscription.mailing_list]).pk,
        "templates": _template().pk, "templates/layouts": _layout().pk,
        "sending": SMTPBackendFactory().pk, "settings/senders": sender.pk, "users": tess.pk,
        **_campaign_objects(subscription.mailing_list, sender, users[OWNER]),
        **_sending_domain(),
    }
    return ids, users


@pytest.fixture(scope="module")
def matrix(django_db_setup, django_db_blocker):
    """The world, built once per module and committed; each test's own changes roll back with it.
    Afterwards the tables are emptied, as pytest-django does after a transactional test."""
    with django_db_blocker.unblock():
        ids, users = _build_world()
        clients = {actor: _client(Client, users.get(actor)) for actor in CAST}
    yield ids, users, clients
    with django_db_blocker.unblock():
        call_command("flush", interactive=False, verbosity=0)


def with_outbox_message(ids):
    """The ids plus the name of a message put in this test's outbox folder."""
    OutboxBackend().send_messages([mail.EmailMessage("Matrix", "Body", "from@example.com", ["to@example.com"])])
    return {**ids, "outbox": outbox.entries(limit=1)[0].name}


@pytest.fixture
def world(matrix):
    """(ids, users): the module's world plus a message in this test's outbox folder."""
    ids, users, _ = matrix
    return with_outbox_message(ids), users


def _campaign_objects(mailing_list, sender, owner):
    """A sequence with a step, a REST hook with a delivery: ids by the path that names them."""
    from campaigns.models import Hook, HookDelivery, Sequence, Step

    sequence = Sequence.objects.create(name="Matrix sequence", mailing_list=mailing_list, sender=sender)
    step = Step.objects.create(sequence=sequence, position=1, subject="Hi", body="<p>Hi</p>")
    hook = Hook.objects.create(event="subscriber.created", target="https://hooks.example/in", owner=owner)
    delivery = HookDelivery.objects.create(
        uid=uuid.uuid4(), hook=hook, event=hook.event, body={}, next_attempt_at=timezone.now(),
        expires_at=timezone.now() + timedelta(days=1))
    return {"sequences": sequence.pk, "sequences/steps": step.pk, "hooks": hook.pk, "hooks/deliveries": delivery.pk}


def _sending_domain():
    """A sending domain with a retired key (one that may be forgotten): ids by the path that names them."""
    from campaigns import domains
    from campaigns.models import DkimKey

    sending_domain = domains.create_domain("matrix.example")
    retired = domains.add_key(sending_domain, DkimKey.RSA, state=DkimKey.RETIRED)
    return {"sending/domains": sending_domain.pk, "sending/domains/keys": retired.pk}


@pytest.fixture(autouse=True)
def _loopback_dns(dns_server):
    """"Check now" looks records up: on the loopback DNS server, never the network."""


def _template():
    from campaigns.models import Template

    return Template.objects.create(name="Matrix template", subject="Hi", body="<p>Hi</p>")


def _layout():
    from campaigns.models import Layout

    return Layout.objects.create(name="Matrix layout", html="<html><body>{{ content }}</body></html>")


def _kwargs(route, ids):
    """Real ids for the route's parameters: the object named by the path segment before each one."""
    kwargs, parts = {}, route.strip("/").split("/")
    for index, part in enumerate(parts):
        if not part.startswith("<"):
            continue
        kind, _, name = part.strip("<>").partition(":")
        owner = "/".join(p for p in parts[:index] if not p.startswith("<"))
        kwargs[name] = _value(kind, name, owner, ids)
    return kwargs


def _value(kind, name, owner, ids):
    if name == "kind":
        return "smtp"
    if name in ("token", "uidb64"):
        return "not-a-real-token"
    if owner in ids:
        return ids[owner]
    last = owner.split("/")[-1] if owner else ""
    if last in ids:
        return ids[last]
    return 999999 if kind == "int" else "nothing"


def fingerprint():
    """A digest of every row of the project's tables (the fixtures keep them small)."""
    digest = hashlib.sha256()
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label in ("lists", "campaigns", "autoresponder", "auth", "authtoken"):
            rows = model.objects.order_by("pk").values_list() if model._meta.pk else []
            digest.update(repr((model._meta.label, list(rows))).encode())
    return digest.hexdigest()


def _client(client_class, user):
    client = client_class()
    if user is not None:
        client.force_login(user)
    return client


def _is_login_redirect(response):
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _check(response, actor, role, method, url, *, message_refusal=False):
    allowed = actor not in ("anonymous", "mallory") and CAST.index(actor) >= CAST.index(role)
    where = f"{method} {url} as {actor}"
    if allowed:
        assert response.status_code != 403 and not _is_login_redirect(response), f"{where}: denied, should be allowed"
    elif actor == "anonymous":
        assert _is_login_redirect(response), f"{where}: {response.status_code}, should redirect to sign-in"
    elif message_refusal and actor != "mallory":
        assert response.status_code == 302 and response["Location"] == url, f"{where}: should be refused"
    else:
        assert response.status_code == 403, f"{where}: {response.status_code}, should be 403"
    return allowed


@pytest.mark.parametrize("name, route", [p for p in dashboard_patterns() if ROLES.get(p[0]) not in (None, OUTSIDE)],
                         ids=lambda value: value if isinstance(value, str) and ":" in value or "/" not in str(value) else "")
def test_role_matrix(name, route, world, matrix):
    ids, _ = world
    clients = matrix[2]
    url = reverse(name, kwargs=_kwargs(route, ids))
    get_role, post_role = ROLES[name] if isinstance(ROLES[name], tuple) else (ROLES[name], ROLES[name])
    soft = name in REFUSED_WITH_A_MESSAGE
    for actor in CAST:
        _check(clients[actor].get(url), actor, get_role, "GET", url)
    # POSTs, weakest first: all the denials, then one look at the database, then the allowed ones
    before, first_allowed = fingerprint(), CAST.index(post_role)
    for actor in CAST[:first_allowed]:
        _check(clients[actor].post(url, {}), actor, post_role, "POST", url, message_refusal=soft)
    assert fingerprint() == before, f"a denied POST to {url} changed rows"
    for actor in CAST[first_allowed:]:
        _check(clients[actor].post(url, {}), actor, post_role, "POST", url)
