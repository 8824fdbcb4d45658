"""
Fixtures for the REST API tests: one token client per member of the cast
(tests/conftest.py), authenticated exactly as another system would be, with
`Authorization: Token <key>`.

Import them into a test module with `from tests.api_fixtures import *`.
"""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

__all__ = ["api", "owner_api", "editor_api", "viewer_api", "nobody_api", "anonymous_api", "ROLE_CLIENTS"]


def token_client(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.fixture
def owner_api(alice):
    return token_client(alice)


@pytest.fixture
def editor_api(bob):
    return token_client(bob)


@pytest.fixture
def viewer_api(victor):
    return token_client(victor)


@pytest.fixture
def nobody_api(mallory):
    return token_client(mallory)


@pytest.fixture
def anonymous_api(db):
    return APIClient()


ROLE_CLIENTS = {"owner": "owner_api", "editor": "editor_api", "viewer": "viewer_api", "none": "nobody_api"}


@pytest.fixture
def api(request):
    """The client of the role a test is parametrised with: @pytest.mark.parametrize("api", [...], indirect=True)."""
    return request.getfixturevalue(ROLE_CLIENTS[request.param])
