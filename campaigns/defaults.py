"""
The backend defined by EMAIL_URL, kept in step with the environment.

It is created the first time something is sent and updated whenever EMAIL_URL
changes (one indexed SELECT per batch), so a fresh checkout sends to the outbox
without any setup and an operator switches to a real server with one variable.
Rates, priority and prices set in the admin are kept; it sits last by priority,
so backends set up in the dashboard go first.
"""

from urllib.parse import unquote, urlsplit

from django.conf import settings
from django.db import IntegrityError, transaction

from .models import Backend

ENV_KEY = "EMAIL_URL"
NAME = "Default (EMAIL_URL)"
_SECURITY = {"smtp": Backend.NONE, "smtp+tls": Backend.STARTTLS, "smtps": Backend.TLS}


def fields_from_url(url):
    """Backend fields described by an EMAIL_URL (outbox://, console://, smtp://, smtp+tls://, smtps://)."""
    parts = urlsplit(url)
    if parts.scheme in ("outbox", "console"):
        return {"kind": Backend.OUTBOX, "host": "", "port": None, "username": "", "password": ""}
    return {
        "kind": Backend.SMTP,
        "host": parts.hostname or "",
        "port": parts.port,
        "security": _SECURITY.get(parts.scheme, Backend.NONE),
        "username": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
    }


def ensure_env_backend():
    """Create or update the EMAIL_URL backend; returns it."""
    wanted = fields_from_url(settings.EMAIL_URL)
    backend = Backend.objects.filter(env_key=ENV_KEY).first()
    if backend is None:
        try:
            with transaction.atomic():
                return Backend.objects.create(env_key=ENV_KEY, name=NAME, priority=1000, **wanted)
        except IntegrityError:  # another process created it, or the name is taken
            backend = Backend.objects.filter(env_key=ENV_KEY).first()
            if backend is None:
                return Backend.objects.create(env_key=ENV_KEY, name="Default backend from EMAIL_URL", priority=1000, **wanted)
    changed = [name for name, value in wanted.items() if getattr(backend, name) != value]
    if changed:
        for name in changed:
            setattr(backend, name, wanted[name])
        backend.save(update_fields=[*changed, "updated_at"])
    return backend
