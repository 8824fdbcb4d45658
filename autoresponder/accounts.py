"""
Dashboard users and their roles, managed by owners (views_users) and callable
from anywhere else (the admin, a management command).

The one rule beyond the roles themselves: there is always at least one active
owner. Every change that could remove one locks the owner group's row first, so
two owners demoting each other at the same moment cannot both succeed.
"""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from .roles import ROLES, grant

User = get_user_model()
PASSWORD_ALPHABET = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"


class AccountError(Exception):
    """A change refused with a reason to show the owner."""


def owner_q():
    return Q(is_active=True) & (Q(is_superuser=True) | Q(groups__name="owner"))


def active_owner_ids():
    return set(User.objects.filter(owner_q()).values_list("pk", flat=True))


def _would_leave_no_owner(user):
    """Lock the owner group (serialises every change that can drop an owner), then check."""
    Group.objects.select_for_update().filter(name="owner").first()
    owners = active_owner_ids()
    return owners == {user.pk}


def create_user(*, username, email, role):
    """A new active user with `role` and no usable password yet (see temporary_password and set_password_link)."""
    if role not in ROLES:
        raise AccountError(f"Choose a role: {', '.join(ROLES)}.")
    username = username.strip()
    if User.objects.filter(username__iexact=username).exists():
        raise AccountError(f"There is already a user called “{username}”. Pick another username.")
    email = email.strip()
    if email:
        try:
            validate_email(email)
        except ValidationError:
            raise AccountError("That email address does not look right.") from None
    try:
        with transaction.atomic():
            user = User(username=username, email=email, is_active=True)
            user.set_unusable_password()
            user.full_clean(exclude=["password"])
            user.save()
            grant(user, role)
    except ValidationError as exc:
        raise AccountError(" ".join(m for messages in exc.message_dict.values() for m in messages)) from None
    except IntegrityError:
        raise AccountError(f"There is already a user called “{username}”. Pick another username.") from None
    return user


def temporary_password(user):
    """Give `user` a new random password and return it (to show once; it is stored hashed)."""
    password = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(16))
    user.set_password(password)
    user.save(update_fields=["password"])
    return password


def set_password_link(user):
    """A link where `user` chooses a password. It works once, until they sign in or change the
    password, and for PASSWORD_RESET_TIMEOUT (three days by default)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    return settings.SITE_URL + reverse("password_reset_confirm", args=[uid, token])


def change_role(user, role):
    """Give `user` exactly `role`. Refused for superusers (an admin matter) and for the last owner."""
    if role not in ROLES:
        raise AccountError(f"Choose a role: {', '.join(ROLES)}.")
    if user.is_superuser:
        raise AccountError(f"{user.get_username()} is a superuser, always an owner here. Change that in the admin.")
    with transaction.atomic():
        if role != "owner" and _would_leave_no_owner(user):
            raise AccountError(f"{user.get_username()} is the last owner. Make someone else an owner first.")
        grant(user, role)


def deactivate(user, *, by):
    """Stop `user` signing in (their sessions and API token stop working at once); keeps their history."""
    if user.pk == by.pk:
        raise AccountError("You cannot deactivate your own account. Ask another owner.")
    with transaction.atomic():
        if _would_leave_no_owner(user):
            raise AccountError(f"{user.get_username()} is the last owner. Make someone else an owner first.")
        User.objects.filter(pk=user.pk).update(is_active=False)
    user.is_active = False


def activate(user):
    User.objects.filter(pk=user.pk).update(is_active=True)
    user.is_active = True


def role_label(user):
    """The role as the users page shows it."""
    if user.is_superuser:
        return "owner (superuser)"
    return role_of_any(user) or "no role"


def role_of_any(user):
    """Like roles.role_of, but also for an inactive user (whose role_of is None)."""
    names = {g.name for g in user.groups.all()}
    return next((r for r in reversed(ROLES) if r in names), None)
