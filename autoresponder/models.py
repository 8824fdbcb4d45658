"""
Sign-in security for dashboard users: optional TOTP two-factor authentication.

The secret is stored encrypted (autoresponder.crypto) and recovery codes only as
keyed hashes; see autoresponder.twofactor for the rules.
"""

from django.conf import settings
from django.db import models


class TwoFactor(models.Model):
    """A user's authenticator app. Sign-in asks for a code once `confirmed_at` is set."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="two_factor")
    secret = models.TextField(help_text="The TOTP secret, encrypted with ENCRYPTION_KEY.")
    confirmed_at = models.DateTimeField(null=True, blank=True)
    # The last 30-second time step a code was accepted for: a code is good once, so a
    # code seen over someone's shoulder cannot be replayed within its validity.
    last_step = models.BigIntegerField(default=0)
    last_used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "two-factor authentication"
        verbose_name_plural = "two-factor authentication"

    def __str__(self):
        state = "on" if self.confirmed_at else "being set up"
        return f"Two-factor sign-in for {self.user} ({state})"

    @property
    def is_confirmed(self):
        return self.confirmed_at is not None


class RecoveryCode(models.Model):
    """A one-time code for signing in without the authenticator app, kept as a keyed hash."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64)
    used_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "digest"], name="recovery_code_unique")]

    def __str__(self):
        return f"Recovery code of {self.user} ({'used' if self.used_at else 'unused'})"
