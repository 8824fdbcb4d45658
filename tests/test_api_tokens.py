"""API tokens: made and revoked in the dashboard or with drf_create_token; a token carries its user's role."""

import re

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from autoresponder.roles import grant
from lists.models import MailingList
from tests.factories import MailingListFactory

pytestmark = pytest.mark.django_db


def _client_with(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_token_page_is_in_the_navigation_for_viewers(victor_client):
    response = victor_client.get("/account/api/")

    assert response.status_code == 200
    assert {"label": "API", "url": "/account/api/", "active": True} in response.context["nav"]
    assert b"You have no token yet." in response.content


def test_token_page_is_refused_to_a_user_without_a_role(mallory_client):
    assert mallory_client.get("/account/api/").status_code == 403
    assert mallory_client.post("/account/api/token/").status_code == 403
    assert not Token.objects.exists()


def test_creating_a_token_shows_the_key_once_and_it_works(bob_client, bob):
    response = bob_client.post("/account/api/token/")

    token = Token.objects.get(user=bob)
    assert response.status_code == 200
    assert token.key in response.content.decode()
    assert token.key not in bob_client.get("/account/api/").content.decode()
    assert _client_with(token.key).get("/api/v1/lists/").status_code == 200


def test_replacing_a_token_stops_the_old_one(bob_client, bob):
    bob_client.post("/account/api/token/")
    old = Token.objects.get(user=bob).key

    bob_client.post("/account/api/token/", HTTP_HX_REQUEST="true")

    new = Token.objects.get(user=bob).key
    assert new != old
    assert _client_with(old).get("/api/v1/lists/").status_code == 401
    assert _client_with(new).get("/api/v1/lists/").status_code == 200


def test_revoking_a_token(bob_client, bob):
    bob_client.post("/account/api/token/")
    key = Token.objects.get(user=bob).key

    response = bob_client.post("/account/api/token/revoke/")

    assert response.status_code == 302
    assert not Token.objects.filter(user=bob).exists()
    assert _client_with(key).get("/api/v1/lists/").status_code == 401


def test_token_page_htmx_returns_the_partial(victor_client):
    response = victor_client.post("/account/api/token/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<section class="card" id="api-token"')


def test_drf_create_token_command_makes_a_working_token(bob, capsys):
    call_command("drf_create_token", "bob")

    key = re.search(r"[0-9a-f]{40}", capsys.readouterr().out).group(0)
    assert Token.objects.get(user=bob).key == key
    assert _client_with(key).post("/api/v1/lists/", {"name": "From the CLI"}, format="json").status_code == 201


def test_a_token_carries_the_role_and_losing_it_takes_the_rights(bob):
    key = Token.objects.create(user=bob).key
    client = _client_with(key)
    mailing_list = MailingListFactory(name="Before")

    grant(bob, "viewer")
    refused = client.patch(f"/api/v1/lists/{mailing_list.pk}/", {"name": "After"}, format="json")
    grant(bob, None)
    nothing = client.get("/api/v1/lists/")

    assert refused.status_code == 403
    assert nothing.status_code == 403
    assert MailingList.objects.get().name == "Before"


def test_no_token_or_a_wrong_token_is_401(db):
    assert APIClient().get("/api/v1/lists/").status_code == 401
    assert _client_with("0" * 40).get("/api/v1/lists/").status_code == 401
    assert APIClient().get("/api/v1/lists/").headers["WWW-Authenticate"] == "Token"
