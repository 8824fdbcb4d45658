"""
The account page and two-factor sign-in (rules in autoresponder.twofactor).

Sign-in with two-factor on: the password step (views.LoginView) does not log the
user in; it notes who passed it in the session (for PENDING_SECONDS) and sends
them to login_code, which logs them in once a code checks out. Code guesses are
limited per user and per address, so six digits cannot be brute-forced.
"""

import time

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import login as auth_login
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from . import ratelimit, twofactor
from .forms import CodeForm, PasswordConfirmForm
from .roles import role_of, role_required

PENDING_KEY = "twofactor_pending"
PENDING_SECONDS = 300
CODE_TRIES_PER_USER = 5  # per CODE_WINDOW: 5 guesses at 3 live codes in a million
CODE_TRIES_PER_IP = 20
CODE_WINDOW = 300
REAUTH_TRIES = 5  # password re-entry on the account page, per user and 15 minutes


# --- Sign-in, second step -------------------------------------------------------------------


def begin(request, user, next_url):
    """Called by the password step for a user with two-factor on: remember them for the code step."""
    request.session[PENDING_KEY] = {"user": user.pk, "backend": user.backend, "next": next_url, "at": time.time()}


def _pending_user(request):
    pending = request.session.get(PENDING_KEY)
    if not pending or time.time() - pending["at"] > PENDING_SECONDS:
        return None, None
    user = get_user_model().objects.filter(pk=pending["user"], is_active=True).first()
    return user, pending


def _within_limits(request, user):
    # Both counters move on every try, so neither an address nor an account gets more guesses.
    per_user = ratelimit.hit("2fa-user", user.pk, limit=CODE_TRIES_PER_USER, window=CODE_WINDOW)
    per_ip = ratelimit.hit("2fa-ip", ratelimit.client_ip(request), limit=CODE_TRIES_PER_IP, window=CODE_WINDOW)
    return per_user and per_ip


@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def login_code(request):
    user, pending = _pending_user(request)
    if user is None:
        request.session.pop(PENDING_KEY, None)
        messages.error(request, "Your sign-in took too long or was not started. Enter your password again.")
        return redirect("login")
    form = CodeForm(request.POST or None)
    status = 200
    if request.method == "POST" and form.is_valid():
        if not _within_limits(request, user):
            form.add_error("code", "Too many codes tried. Wait five minutes, then try again.")
            status = 429
        elif twofactor.verify(user, form.cleaned_data["code"]):
            del request.session[PENDING_KEY]
            auth_login(request, user, backend=pending["backend"])
            return redirect(pending["next"])
        else:
            form.add_error("code", "That code is not right. Type the newest code from your app "
                                   "(check that your phone's clock is right), or one of your recovery codes.")
            status = 400
    return render(request, "registration/login_code.html", {"form": form}, status=status)


# --- The account page --------------------------------------------------------------------------


def _account_page(request, *, form=None, status=200):
    device = twofactor.device_of(request.user)
    return render(request, "account/index.html", {
        "role": role_of(request.user),
        "device": device,
        "is_enabled": bool(device and device.is_confirmed),
        "codes_left": twofactor.recovery_codes_left(request.user),
        "form": form or PasswordConfirmForm(),
    }, status=status)


@role_required("viewer")
def account_index(request):
    return _account_page(request)


@role_required("viewer")
@require_POST
def twofactor_start(request):
    try:
        twofactor.start_enrolment(request.user)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect("account")
    return redirect("twofactor_setup")


@role_required("viewer")
@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
def twofactor_setup(request):
    """Shows the new secret (QR code and text) and turns two-factor on once a first code matches."""
    device = twofactor.device_of(request.user)
    if device is None or device.is_confirmed:
        return redirect("account")
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if not ratelimit.hit("2fa-setup", request.user.pk, limit=CODE_TRIES_PER_USER, window=CODE_WINDOW):
            form.add_error("code", "Too many codes tried. Wait five minutes, then try again.")
        else:
            try:
                codes = twofactor.confirm_enrolment(request.user, form.cleaned_data["code"])
            except twofactor.InvalidCode as exc:
                form.add_error("code", str(exc))
            else:
                return _show_recovery_codes(request, codes, first=True)
    secret = twofactor.secret_of(device)
    uri = twofactor.provisioning_uri(request.user, secret)
    return render(request, "account/twofactor_setup.html", {
        "form": form, "secret": " ".join(secret[i:i + 4] for i in range(0, len(secret), 4)),
        "qr": twofactor.qr_svg(uri),
    }, status=400 if form.errors else 200)


def _show_recovery_codes(request, codes, *, first):
    """The codes appear in this response only; the database keeps their hashes."""
    response = render(request, "account/recovery_codes.html", {"codes": codes, "first": first})
    response["Cache-Control"] = "no-store"
    return response


def _password_confirmed(request):
    """(ok, form): the password re-entered on the account page, rate-limited per user."""
    form = PasswordConfirmForm(request.POST)
    if not form.is_valid():
        return False, form
    if not ratelimit.hit("reauth", request.user.pk, limit=REAUTH_TRIES, window=900):
        form.add_error("password", "Too many tries. Wait 15 minutes, then try again.")
    elif not request.user.check_password(form.cleaned_data["password"]):
        form.add_error("password", "That is not your password.")
    return not form.errors, form


@role_required("viewer")
@sensitive_post_parameters("password")
@require_POST
def twofactor_recovery(request):
    ok, form = _password_confirmed(request)
    if not ok or not twofactor.is_enabled(request.user):
        return _account_page(request, form=form, status=400)
    return _show_recovery_codes(request, twofactor.new_recovery_codes(request.user), first=False)


@role_required("viewer")
@sensitive_post_parameters("password")
@require_POST
def twofactor_disable(request):
    ok, form = _password_confirmed(request)
    if not ok:
        return _account_page(request, form=form, status=400)
    twofactor.disable(request.user)
    messages.success(request, "Two-factor sign-in is off. Sign-in asks only for your password now.")
    return redirect("account")
