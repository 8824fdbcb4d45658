"""
The shared cast and services.

alice owns the Autoresponder, bob is on her team (an editor), victor only
looks (a viewer), mallory has an account but no role and must be denied.
"""

import pytest
from django.core.cache import cache

from autoresponder.roles import grant
from tests.factories import UserFactory
from tests.smtp import SMTPServer

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _isolated_files(settings, tmp_path):
    """Every test gets its own outbox and media folder, and a fast password hasher
    (the cast's passwords would otherwise cost ~0.1 s each to hash)."""
    settings.OUTBOX_DIR = tmp_path / "outbox"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    yield
    cache.clear()


def _member(username, role):
    user = UserFactory(username=username, password=PASSWORD)
    grant(user, role)
    return user


@pytest.fixture
def alice(db):
    return _member("alice", "owner")


@pytest.fixture
def bob(db):
    return _member("bob", "editor")


@pytest.fixture
def victor(db):
    return _member("victor", "viewer")


@pytest.fixture
def mallory(db):
    return _member("mallory", None)


def _client_for(client_class, user):
    c = client_class()
    c.force_login(user)
    return c


@pytest.fixture
def alice_client(alice, client):
    client.force_login(alice)
    return client


@pytest.fixture
def bob_client(bob, client_class):
    return _client_for(client_class, bob)


@pytest.fixture
def victor_client(victor, client_class):
    return _client_for(client_class, victor)


@pytest.fixture
def mallory_client(mallory, client_class):
    return _client_for(client_class, mallory)


@pytest.fixture
def client_class():
    from django.test import Client

    return Client


@pytest.fixture
def smtp_server():
    """A real SMTP server on a free loopback port; `.messages` holds what it accepted."""
    server = SMTPServer().start()
    yield server
    server.stop()


from tests.browser import browser, page  # noqa: E402,F401  (fixtures for browser tests)
