"""
Who may do what in the dashboard.

Roles are Django groups, so operators manage them in the admin. Each role
includes the ones below it: a viewer reads, an editor changes lists, content and
sends, an admin also manages backends and settings, an owner also manages users.
A signed-in user without a role (mallory) is refused everywhere.
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied

ROLES = ("viewer", "editor", "admin", "owner")  # weakest first


def role_of(user):
    """The user's strongest role, or None."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_superuser:
        return "owner"
    cached = getattr(user, "_autoresponder_role", False)
    if cached is not False:
        return cached
    names = set(user.groups.values_list("name", flat=True))
    role = next((r for r in reversed(ROLES) if r in names), None)
    user._autoresponder_role = role
    return role


def has_role(user, role):
    current = role_of(user)
    return current is not None and ROLES.index(current) >= ROLES.index(role)


def role_required(role):
    """Decorator for dashboard views: signed in, and at least `role`."""

    def decorator(view):
        @wraps(view)
        @login_required
        def wrapper(request, *args, **kwargs):
            if not has_role(request.user, role):
                raise PermissionDenied(f"This needs the {role} role.")
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def grant(user, role):
    """Give `user` exactly `role` (replacing any other role)."""
    from django.contrib.auth.models import Group

    user.groups.remove(*Group.objects.filter(name__in=ROLES))
    if role:
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    user._autoresponder_role = role
