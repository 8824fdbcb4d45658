"""
API tokens: each user creates, replaces and revokes their own token for the
REST API (rest_framework.authtoken: one token per user; `manage.py
drf_create_token <username>` does the same from the command line).

A token acts as its user, so it carries the user's role: a viewer's token only
reads. The key is shown once, right after it is made, in the response to that
POST (never in a redirect or the session); afterwards the page only says when
the token was created.
"""

from django.db import transaction
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from rest_framework.authtoken.models import Token

from .roles import has_role, role_of, role_required

ROLE_POWERS = {
    "viewer": "read everything (GET requests only)",
    "editor": "read, and change lists, subscribers, content, segments and broadcasts",
    "admin": "everything an editor can, plus sending backends, sender identities and REST hooks",
    "owner": "everything an editor can, plus sending backends, sender identities and REST hooks",
}


def _page(request, *, new_key=None, status=200):
    token = Token.objects.filter(user=request.user).first()
    context = {"token": token, "new_key": new_key, "role": role_of(request.user),
               "powers": ROLE_POWERS.get(role_of(request.user), ""), "manages_hooks": has_role(request.user, "admin")}
    template = "tokens/_token.html" if request.htmx else "tokens/index.html"
    return render(request, template, context, status=status)


@role_required("viewer")
def token_index(request):
    return _page(request)


@role_required("viewer")
@require_POST
def token_create(request):
    """Make a token, replacing the user's old one (which stops working at once)."""
    with transaction.atomic():
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
    return _page(request, new_key=token.key)


@role_required("viewer")
@require_POST
def token_revoke(request):
    Token.objects.filter(user=request.user).delete()
    if request.htmx:
        return _page(request)
    return redirect("api_tokens")
