import pytest

from autoresponder.roles import grant, has_role, role_of

pytestmark = pytest.mark.django_db


def test_roles_include_the_weaker_ones(alice, bob, victor, mallory):
    assert role_of(alice) == "owner"
    assert has_role(bob, "editor") and has_role(bob, "viewer") and not has_role(bob, "admin")
    assert has_role(victor, "viewer") and not has_role(victor, "editor")
    assert role_of(mallory) is None and not has_role(mallory, "viewer")


def test_grant_replaces_the_previous_role(bob):
    grant(bob, "admin")
    assert list(bob.groups.values_list("name", flat=True)) == ["admin"]
    assert role_of(bob) == "admin"


def test_inactive_users_have_no_role(alice):
    alice.is_active = False
    assert role_of(alice) is None
