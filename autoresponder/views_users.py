"""
Users and roles: owners only. Add a user (with a temporary password or a
set-password link, shown once), change a role, give a new way in, deactivate or
reactivate, reset two-factor sign-in. The rules are in autoresponder.accounts.
"""

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from . import accounts, twofactor
from .forms import AccessForm, RoleForm, UserCreateForm
from .models import TwoFactor
from .roles import role_required

User = get_user_model()


def _users():
    return (User.objects.order_by("-is_active", "username")
            .prefetch_related("groups", "two_factor"))


def _annotate(user):
    user.role_label = accounts.role_label(user)
    try:
        user.has_two_factor = user.two_factor.is_confirmed
    except TwoFactor.DoesNotExist:
        user.has_two_factor = False
    return user


@role_required("owner")
def user_index(request):
    users = [_annotate(u) for u in _users()]
    return render(request, "users/index.html", {"users": users, "owners": len(accounts.active_owner_ids())})


def _way_in(user, access):
    """(kind, secret) to show once: a set-password link or a temporary password."""
    if access == "password":
        return "password", accounts.temporary_password(user)
    return "link", accounts.set_password_link(user)


def _show_way_in(request, user, access, *, created):
    kind, secret = _way_in(user, access)
    response = render(request, "users/way_in.html", {"member": _annotate(user), "kind": kind, "secret": secret,
                                                      "created": created})
    response["Cache-Control"] = "no-store"
    return response


@role_required("owner")
@never_cache
@require_http_methods(["GET", "POST"])
def user_create(request):
    form = UserCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            user = accounts.create_user(username=data["username"], email=data["email"], role=data["role"])
        except accounts.AccountError as exc:
            form.add_error(None, str(exc))
        else:
            return _show_way_in(request, user, data["access"], created=True)
    return render(request, "users/form.html", {"form": form}, status=400 if form.errors else 200)


def _member(pk):
    return _annotate(get_object_or_404(_users(), pk=pk))


@role_required("owner")
def user_detail(request, pk):
    member = _member(pk)
    return render(request, "users/detail.html", {
        "member": member, "role_form": RoleForm(initial={"role": accounts.role_of_any(member)}),
        "access_form": AccessForm(), "is_self": member.pk == request.user.pk,
    })


def _change(request, pk, change, done):
    """Apply `change` to the user; a refusal (accounts.AccountError) is shown, never an error page."""
    member = _member(pk)
    try:
        change(member)
    except accounts.AccountError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, done(member))
    return redirect("user_detail", pk=pk)


@role_required("owner")
@require_POST
def user_role(request, pk):
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose one of the four roles.")
        return redirect("user_detail", pk=pk)
    role = form.cleaned_data["role"]
    return _change(request, pk, lambda member: accounts.change_role(member, role),
                   lambda member: f"{member.get_username()} is now {role}.")


@role_required("owner")
@never_cache
@require_POST
def user_access(request, pk):
    """A new temporary password or set-password link, e.g. for someone who forgot theirs."""
    member = _member(pk)
    form = AccessForm(request.POST)
    access = form.cleaned_data["access"] if form.is_valid() else "link"
    return _show_way_in(request, member, access, created=False)


@role_required("owner")
@require_POST
def user_deactivate(request, pk):
    return _change(request, pk, lambda member: accounts.deactivate(member, by=request.user),
                   lambda member: f"{member.get_username()} can no longer sign in. Their API token stopped working too.")


@role_required("owner")
@require_POST
def user_activate(request, pk):
    return _change(request, pk, accounts.activate, lambda member: f"{member.get_username()} can sign in again.")


@role_required("owner")
@require_POST
def user_twofactor_reset(request, pk):
    member = _member(pk)
    if twofactor.disable(member):
        messages.success(request, f"Two-factor sign-in is off for {member.get_username()}. "
                                  "They sign in with their password and can set it up again from their account page.")
    else:
        messages.info(request, f"{member.get_username()} had no two-factor sign-in to reset.")
    return redirect("user_detail", pk=pk)
