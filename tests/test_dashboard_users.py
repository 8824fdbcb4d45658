"""Users and roles: owners add users (with a link or a temporary password), change roles, deactivate; the last owner stays."""

import re

import pytest
from django.contrib.auth import get_user_model

from autoresponder import accounts
from autoresponder.roles import grant, role_of
from tests.conftest import PASSWORD
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
User = get_user_model()


def test_alice_sees_every_user_with_role_and_two_factor_state(alice_client, bob, victor):
    response = alice_client.get("/users/")

    assert response.status_code == 200
    rows = {u.username: u.role_label for u in response.context["users"]}
    assert rows == {"alice": "owner", "bob": "editor", "victor": "viewer"}
    assert "1 active owner." in response.content.decode()


@pytest.mark.parametrize("who", ["bob_client", "victor_client", "mallory_client"])
def test_only_owners_reach_the_users_pages(request, who, alice):
    client = request.getfixturevalue(who)
    assert client.get("/users/").status_code == 403
    assert client.get(f"/users/{alice.pk}/").status_code == 403
    assert client.post("/users/new/", {"username": "eve", "role": "owner", "access": "password"}).status_code == 403
    assert not User.objects.filter(username="eve").exists()


def test_an_admin_cannot_manage_users_either(client, alice):
    carol = UserFactory(username="carol")
    grant(carol, "admin")
    client.force_login(carol)

    response = client.post(f"/users/{alice.pk}/role/", {"role": "viewer"})

    assert response.status_code == 403 and role_of(User.objects.get(pk=alice.pk)) == "owner"


def test_users_are_listed_in_the_navigation_for_owners_only(alice_client, bob_client):
    assert "/users/" in [i["url"] for i in alice_client.get("/").context["nav"]]
    assert "/users/" not in [i["url"] for i in bob_client.get("/").context["nav"]]


def test_adding_a_user_with_a_set_password_link(alice_client, client_class):
    # when
    response = alice_client.post("/users/new/", {"username": "dora", "email": "dora@example.com",
                                                 "role": "editor", "access": "link"})

    # then: the link is in this response only
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    dora = User.objects.get(username="dora")
    assert role_of(dora) == "editor" and dora.email == "dora@example.com" and not dora.has_usable_password()
    link = response.context["secret"]
    assert link.startswith("http://testserver/accounts/reset/")

    # and: dora chooses her password through it, then signs in
    visitor = client_class()
    form_page = visitor.get(link.removeprefix("http://testserver"), follow=True)
    assert "Choose your password" in form_page.content.decode()
    done = visitor.post(form_page.redirect_chain[-1][0], {"new_password1": "a fine long passphrase 42",
                                                          "new_password2": "a fine long passphrase 42"})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    signed_in = visitor.post("/accounts/login/", {"username": "dora", "password": "a fine long passphrase 42"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/"
    # and the link is spent
    again = client_class().get(link.removeprefix("http://testserver"), follow=True)
    assert "This link no longer works" in again.content.decode()


def test_adding_a_user_with_a_temporary_password(alice_client, client_class):
    response = alice_client.post("/users/new/", {"username": "ed", "email": "", "role": "viewer",
                                                 "access": "password"})

    password = response.context["secret"]
    assert re.fullmatch(r"[A-Za-z0-9]{16}", password)
    assert password in response.content.decode()
    assert User.objects.get(username="ed").check_password(password)
    assert client_class().post("/accounts/login/", {"username": "ed", "password": password}).status_code == 302


def test_a_taken_username_is_refused_whatever_its_case(alice_client, bob):
    response = alice_client.post("/users/new/", {"username": "BOB", "role": "owner", "access": "link"})

    assert response.status_code == 400
    assert "There is already a user called “BOB”" in response.content.decode()
    assert User.objects.filter(username__iexact="bob").count() == 1 and role_of(bob) == "editor"


def test_a_username_with_spaces_is_refused(alice_client):
    response = alice_client.post("/users/new/", {"username": "two words", "role": "viewer", "access": "link"})
    assert response.status_code == 400 and not User.objects.filter(username="two words").exists()


def test_changing_a_role(alice_client, bob):
    response = alice_client.post(f"/users/{bob.pk}/role/", {"role": "admin"}, follow=True)

    assert role_of(User.objects.get(pk=bob.pk)) == "admin"
    assert "bob is now admin." in response.content.decode()


def test_the_last_owner_cannot_step_down(alice_client, alice):
    response = alice_client.post(f"/users/{alice.pk}/role/", {"role": "editor"}, follow=True)

    assert "alice is the last owner. Make someone else an owner first." in response.content.decode()
    assert role_of(User.objects.get(pk=alice.pk)) == "owner"


def test_an_owner_can_step_down_once_there_is_another(alice_client, alice, bob):
    alice_client.post(f"/users/{bob.pk}/role/", {"role": "owner"})

    alice_client.post(f"/users/{alice.pk}/role/", {"role": "editor"})

    assert role_of(User.objects.get(pk=alice.pk)) == "editor"
    assert role_of(User.objects.get(pk=bob.pk)) == "owner"


def test_the_last_active_owner_cannot_be_deactivated(alice, bob):
    with pytest.raises(accounts.AccountError, match="last owner"):
        accounts.deactivate(alice, by=bob)
    assert User.objects.get(pk=alice.pk).is_active


def test_an_inactive_owner_does_not_count_as_an_owner(alice, bob):
    carol = UserFactory(username="carol", is_active=False)
    grant(carol, "owner")
    with pytest.raises(accounts.AccountError, match="last owner"):
        accounts.change_role(alice, "viewer")


def test_a_superuser_role_is_not_changed_here(alice_client):
    root = UserFactory(username="root", is_superuser=True, is_staff=True)

    response = alice_client.post(f"/users/{root.pk}/role/", {"role": "viewer"}, follow=True)

    assert "root is a superuser" in response.content.decode()
    assert role_of(User.objects.get(pk=root.pk)) == "owner"


def test_deactivating_a_user_ends_their_session(alice_client, bob, bob_client):
    assert bob_client.get("/").status_code == 200

    response = alice_client.post(f"/users/{bob.pk}/deactivate/", follow=True)

    assert "bob can no longer sign in." in response.content.decode()
    assert not User.objects.get(pk=bob.pk).is_active
    assert bob_client.get("/")["Location"].startswith("/accounts/login/")
    assert bob_client.post("/accounts/login/", {"username": "bob", "password": PASSWORD}).status_code == 200


def test_nobody_deactivates_themselves(alice_client, alice, bob):
    grant(bob, "owner")

    response = alice_client.post(f"/users/{alice.pk}/deactivate/", follow=True)

    assert "You cannot deactivate your own account." in response.content.decode()
    assert User.objects.get(pk=alice.pk).is_active


def test_reactivating_a_user(alice_client, bob):
    User.objects.filter(pk=bob.pk).update(is_active=False)

    alice_client.post(f"/users/{bob.pk}/activate/")

    assert User.objects.get(pk=bob.pk).is_active


def test_a_new_temporary_password_for_someone_who_forgot_theirs(alice_client, bob):
    response = alice_client.post(f"/users/{bob.pk}/access/", {"access": "password"})

    bob.refresh_from_db()
    assert bob.check_password(response.context["secret"]) and not bob.check_password(PASSWORD)


def test_a_role_outside_the_four_is_refused():
    with pytest.raises(accounts.AccountError, match="Choose a role"):
        accounts.create_user(username="zed", email="", role="superuser")
    assert not User.objects.filter(username="zed").exists()
