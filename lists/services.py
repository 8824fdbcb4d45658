"""
The audience's state changes, one plain function each. The signup pages, the
dashboard, the REST API, imports, the admin and the sending engine all call
these; nothing else writes subscriptions or suppressions.

Subscription status follows these rules (see subscribe()):

- a new subscription on a single opt-in list is confirmed at once; on a double
  opt-in list it waits, unconfirmed, for the subscriber to click the link in a
  confirmation mail;
- a confirmed subscription stays confirmed when the address signs up again, and
  nothing is sent;
- an unsubscribed address comes back only through a fresh opt-in: an import
  never revives it; a signup (form, API, dashboard) on a double opt-in list
  makes it unconfirmed and sends a new confirmation mail;
- a suppressed or blocklisted address is never sent a confirmation mail, though
  its subscription is recorded (the send engine re-checks suppression anyway).
"""

import secrets
from datetime import timedelta

from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from . import confirmation, events, hygiene
from .models import ErasedAddress, Subscriber, Subscription, Suppression, Tag
from .validation import (
    InvalidSubscriber,
    clean_attributes,
    clean_ip,
    clean_name,
    clean_tag,
    clean_time_zone,
    normalize_email,
    one_line,
    suppressible_address,
)

__all__ = [
    "InvalidSubscriber", "subscribe", "confirm", "unsubscribe", "suppress", "is_suppressed", "unsuppress",
    "tag", "untag", "update_subscriber", "delete_subscriber", "wipe_subscriber", "export_subscriber",
    "request_confirmation", "deliver_confirmation", "find_subscriber", "erased_digest", "is_erased", "is_wiped_address",
]

ERASED_SALT = "lists.erased-address"
ERASED_DOMAIN = "invalid"  # RFC 2606: never resolves, so a wiped row can never be mailed
CONFIRMATION_COOLDOWN = 600  # at most one confirmation mail per address per 10 minutes…
CONFIRMATIONS_PER_DAY = 3  # …and three per 24 hours, across all lists
# A confirmation task delivered twice within this time sends once; shorter than the
# cooldown so a legitimate resend is never swallowed.
CONFIRMATION_CLAIM = timedelta(minutes=5)
SOURCES = {choice for choice, _ in Subscription.SOURCE_CHOICES}
REASONS = {choice for choice, _ in Suppression.REASON_CHOICES}


# --- Finding and erasing addresses ----------------------------------------------------


def find_subscriber(email):
    """The subscriber with this address, any case, or None (uses the lower(email) unique index)."""
    return Subscriber.objects.alias(email_lower=Lower("email")).filter(email_lower=email.strip().lower()).first()


def erased_digest(email):
    """Keyed hash of an erased address. Bulk importers can compare against ErasedAddress.digest.

    Keyed with SECRET_KEY: rotating the key makes old markers unrecognisable.
    """
    return salted_hmac(ERASED_SALT, email.strip().lower(), algorithm="sha256").hexdigest()


def is_erased(email):
    return ErasedAddress.objects.filter(digest=erased_digest(email)).exists()


def is_wiped_address(email):
    return email.startswith("erased-") and email.endswith("@" + ERASED_DOMAIN)


def _admit(email, source):
    """Refuse an erased address unless its owner signs up again through a form (fresh consent)."""
    if source == Subscription.FORM:
        # Their own fresh signup lifts an earlier "unsubscribed from everything" (or the confirmation
        # mail could never reach them); bounces and complaints stay.
        Suppression.objects.filter(email=email.lower(), reason=Suppression.UNSUBSCRIBE).delete()
    elif is_erased(email):
        raise InvalidSubscriber(
            "email",
            "This address was erased at its owner's request. It can come back only if they sign up "
            "again themselves through a signup form.",
        )


def _forget_erasure(email):
    """The owner gave fresh, confirmed consent: the erasure marker has done its job."""
    ErasedAddress.objects.filter(digest=erased_digest(email)).delete()


# --- Subscribing -------------------------------------------------------------------------


def subscribe(mailing_list, email, *, name="", attributes=None, time_zone="", source, ip=None,
              user_agent="", form="", consent_text="", confirmed=None):
    """Add `email` to `mailing_list`, or renew its signup; returns the Subscription.

    The address is validated (raises InvalidSubscriber, saving nothing), the
    Subscriber found by lower-cased address or created, and the subscription's
    status set by the rules in this module's docstring. `confirmed=None` follows
    the list's opt-in; True or False forces confirmed or unconfirmed (an
    importer vouching for consent, or asking for confirmation on a single
    opt-in list). A signup through a form (`source="form"`) can come from anyone,
    so it only fills blank profile fields; trusted sources overwrite them.

    GDPR erasure: an address erased with wipe_subscriber() is refused for every
    source except "form", because only the person signing up again gives fresh
    consent. The erasure marker goes once that consent is confirmed (at once on
    a single opt-in list, on the confirmation click on a double one), so a
    stranger typing the address into a form does not reopen it to imports.
    """
    if source not in SOURCES:
        raise ValueError(f"Unknown source {source!r}; use one of {sorted(SOURCES)}.")
    email = normalize_email(email)
    profile = {"name": clean_name(name), "attributes": clean_attributes(attributes),
               "time_zone": clean_time_zone(time_zone)}
    consent = {"consent_ip": clean_ip(ip), "consent_user_agent": one_line(user_agent, 500),
               "consent_form": one_line(form, 200), "consent_text": str(consent_text or "")[:5000]}
    with transaction.atomic():
        _admit(email, source)
        subscriber = _subscriber_for(email, profile, overwrite=source != Subscription.FORM)
        subscription, wants_mail = _join(subscriber, mailing_list, source, consent, confirmed)
        if source == Subscription.FORM and subscription.status == Subscription.CONFIRMED:
            _forget_erasure(email)
    if wants_mail:
        request_confirmation(subscription)
    return subscription


def _subscriber_for(email, profile, *, overwrite):
    subscriber = find_subscriber(email)
    if subscriber is None:
        try:
            with transaction.atomic():
                subscriber = Subscriber.objects.create(email=email, **profile, **hygiene.classify(email).fields())
                events.publish(events.SUBSCRIBER_CREATED, lambda: [events.created_payload(subscriber)])
                return subscriber
        except IntegrityError:  # another request created the same address a moment ago
            subscriber = find_subscriber(email)
            if subscriber is None:
                raise
    _merge_profile(subscriber, profile, overwrite=overwrite)
    return subscriber


def _merge_profile(subscriber, profile, *, overwrite):
    changed = []
    for field in ("name", "time_zone"):
        value = profile[field]
        if value and value != getattr(subscriber, field) and (overwrite or not getattr(subscriber, field)):
            setattr(subscriber, field, value)
            changed.append(field)
    new = {k: v for k, v in profile["attributes"].items() if overwrite or k not in subscriber.attributes}
    if new and any(subscriber.attributes.get(k) != v for k, v in new.items()):
        subscriber.attributes = {**subscriber.attributes, **new}
        changed.append("attributes")
    if changed:
        subscriber.save(update_fields=[*changed, "updated_at"])


def next_status(current, *, is_double, confirmed, source):
    """The status a signup leads to from `current` (None: no subscription yet)."""
    if current == Subscription.CONFIRMED:
        return Subscription.CONFIRMED
    if current == Subscription.UNSUBSCRIBED:
        if source == Subscription.IMPORT:
            return Subscription.UNSUBSCRIBED
        if is_double or confirmed is False:
            return Subscription.UNCONFIRMED
        return Subscription.CONFIRMED
    if confirmed is None:
        return Subscription.UNCONFIRMED if is_double else Subscription.CONFIRMED
    return Subscription.CONFIRMED if confirmed else Subscription.UNCONFIRMED


def _join(subscriber, mailing_list, source, consent, confirmed):
    """Create or renew the subscription; returns (subscription, whether a confirmation mail is due)."""

    def rule(current):
        return next_status(current, is_double=mailing_list.is_double_opt_in, confirmed=confirmed, source=source)

    subscription, created = Subscription.objects.get_or_create(
        subscriber=subscriber, mailing_list=mailing_list, defaults=_signup_fields(rule(None), source, consent)
    )
    previous = None
    if not created:
        subscription = Subscription.objects.select_for_update().get(pk=subscription.pk)
        previous = subscription.status
        status = rule(subscription.status)
        if status == subscription.status != Subscription.UNCONFIRMED:
            return subscription, False  # confirmed stays as it was; an import leaves an unsubscribe alone
        for field, value in _signup_fields(status, source, consent).items():
            setattr(subscription, field, value)
        subscription.save()
    subscription.subscriber, subscription.mailing_list = subscriber, mailing_list
    if subscription.status == Subscription.CONFIRMED and previous != Subscription.CONFIRMED:
        events.publish(events.SUBSCRIPTION_CONFIRMED, lambda: [events.subscription_payload(subscription)])
    return subscription, subscription.status == Subscription.UNCONFIRMED


def _signup_fields(status, source, consent):
    """A fresh consent record; a confirmed status is confirmed now."""
    now = timezone.now()
    fields = {"status": status, "source": source, "consent_at": now, **consent,
              "unsubscribed_at": None, "unsubscribe_reason": "", "unsubscribe_ip": None}
    if status == Subscription.CONFIRMED:
        fields["confirmed_at"] = now
    return fields


def confirm(subscription, *, ip=None):
    """Confirm an unconfirmed subscription (the double opt-in click). Idempotent.

    A confirmed subscription is left as it is; an unsubscribed one too, since an
    old confirmation link must not undo a later unsubscribe.
    """
    now = timezone.now()
    with transaction.atomic():
        changed = Subscription.objects.filter(pk=subscription.pk, status=Subscription.UNCONFIRMED).update(
            status=Subscription.CONFIRMED, confirmed_at=now, confirm_ip=clean_ip(ip), updated_at=now
        )
        subscription.refresh_from_db()
        if changed:
            _forget_erasure(subscription.subscriber.email)
            events.publish(events.SUBSCRIPTION_CONFIRMED, lambda: [events.subscription_payload(subscription)])
    return subscription


def unsubscribe(subscriber, mailing_list=None, *, reason="", ip=None):
    """Unsubscribe from one list, or from every list when `mailing_list` is None.

    Returns how many subscriptions changed; running it again changes none.
    """
    pending = subscriber.subscriptions.exclude(status=Subscription.UNSUBSCRIBED)
    if mailing_list is not None:
        pending = pending.filter(mailing_list=mailing_list)
    now = timezone.now()
    with transaction.atomic():
        # The rows are locked and named first, so each one changed is announced exactly once.
        ids = list(pending.select_for_update().values_list("pk", flat=True))
        changed = Subscription.objects.filter(pk__in=ids).update(
            status=Subscription.UNSUBSCRIBED, unsubscribed_at=now, unsubscribe_reason=one_line(reason, 200),
            unsubscribe_ip=clean_ip(ip), updated_at=now,
        )
        events.publish(events.SUBSCRIPTION_UNSUBSCRIBED, lambda: [
            events.subscription_payload(s)
            for s in Subscription.objects.filter(pk__in=ids).select_related("subscriber", "mailing_list")
        ])
    return changed


# --- Suppression -------------------------------------------------------------------------


def suppress(email, *, reason, detail=""):
    """Never mail this address again. Idempotent: an existing suppression is returned unchanged.

    The address check is looser than a signup's: a bounce or complaint for an
    address we hold must always be recorded, even one an older import let in.
    """
    if reason not in REASONS:
        raise ValueError(f"Unknown suppression reason {reason!r}; use one of {sorted(REASONS)}.")
    email = suppressible_address(email)
    suppression, _ = Suppression.objects.get_or_create(
        email=email, defaults={"reason": reason, "detail": str(detail or "")[:5000]}
    )
    return suppression


def is_suppressed(email):
    return Suppression.objects.filter(email=email.strip().lower()).exists()


def unsuppress(email):
    """Lift a suppression; returns whether there was one."""
    deleted, _ = Suppression.objects.filter(email=email.strip().lower()).delete()
    return deleted > 0


# --- Tags and profile ----------------------------------------------------------------------


def tag(subscriber, *names):
    """Add tags by name, creating the tags that do not exist yet; returns the Tag rows."""
    names = sorted({clean_tag(n) for n in names})
    if not names:
        return []
    Tag.objects.bulk_create([Tag(name=n) for n in names], ignore_conflicts=True)
    tags = list(Tag.objects.filter(name__in=names))
    subscriber.tags.add(*tags)
    return tags


def untag(subscriber, *names):
    """Remove tags by name; tags the subscriber does not carry are ignored."""
    subscriber.tags.remove(*Tag.objects.filter(name__in=[str(n).strip() for n in names]))


def update_subscriber(subscriber, *, name=None, attributes=None, time_zone=None, email=None):
    """Change the given profile fields (None: leave as is); `attributes` replaces the whole set.

    Raises InvalidSubscriber, changing nothing, on bad input or when another
    subscriber already has the new address.
    """
    changes = {}
    if email is not None:
        changes["email"] = _new_address(subscriber, normalize_email(email))
        if changes["email"].lower() != subscriber.email.lower():
            changes.update(hygiene.classify(changes["email"]).fields())  # a new address: its own flags
    if name is not None:
        changes["name"] = clean_name(name)
    if attributes is not None:
        changes["attributes"] = clean_attributes(attributes)
    if time_zone is not None:
        changes["time_zone"] = clean_time_zone(time_zone)
    if not changes:
        return subscriber
    for field, value in changes.items():
        setattr(subscriber, field, value)
    try:
        with transaction.atomic():
            subscriber.save(update_fields=[*changes, "updated_at"])
    except IntegrityError:
        subscriber.refresh_from_db()
        raise InvalidSubscriber("email", "Another subscriber already has this address.")
    return subscriber


def _new_address(subscriber, email):
    if email.lower() == subscriber.email.lower():
        return email
    other = find_subscriber(email)
    if other is not None and other.pk != subscriber.pk:
        raise InvalidSubscriber("email", "Another subscriber already has this address.")
    _admit(email, Subscription.ADMIN)
    return email


def delete_subscriber(subscriber):
    """Delete the subscriber and their subscriptions (campaign statistics keep their rows)."""
    with transaction.atomic():
        events.publish(events.SUBSCRIBER_DELETED, lambda: [events.deleted_payload(subscriber, erased=False)])
        subscriber.delete()


def wipe_subscriber(subscriber):
    """GDPR erasure: remove the personal data but keep the row for anonymous statistics.

    The address becomes an unusable placeholder (erased-<random>@invalid); name,
    attributes, time zone, tags, the consent IPs and user agents go; every
    subscription is unsubscribed; a suppression of the address is deleted (it
    holds the address). What stays is a keyed hash of the address in
    ErasedAddress, so that an import or API call cannot silently add the person
    back: only their own fresh signup through a form does (see subscribe()).
    Preference and confirmation links die with the address.
    """
    with transaction.atomic():
        address = subscriber.email
        if not is_wiped_address(address):
            events.publish(events.SUBSCRIBER_DELETED, lambda: [events.deleted_payload(subscriber, erased=True)])
            ErasedAddress.objects.get_or_create(digest=erased_digest(address))
            Suppression.objects.filter(email=address.lower()).delete()
        subscriber.email = f"erased-{secrets.token_hex(12)}@{ERASED_DOMAIN}"
        subscriber.name, subscriber.attributes, subscriber.time_zone = "", {}, ""
        subscriber.save(update_fields=["email", "name", "attributes", "time_zone", "updated_at"])
        subscriber.tags.clear()
        unsubscribe(subscriber, reason="Erased at the subscriber's request")
        subscriber.subscriptions.update(consent_ip=None, consent_user_agent="", confirm_ip=None, unsubscribe_ip=None)
    return subscriber


def _iso(value):
    return value.isoformat() if value else None


def export_subscriber(subscriber):
    """GDPR access request: everything held about the subscriber, JSON-serialisable."""
    subscriptions = subscriber.subscriptions.select_related("mailing_list").order_by("created_at", "pk")
    suppression = Suppression.objects.filter(email=subscriber.email.lower()).first()
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "attributes": subscriber.attributes,
        "time_zone": subscriber.time_zone,
        "status": subscriber.status,
        "created_at": _iso(subscriber.created_at),
        "updated_at": _iso(subscriber.updated_at),
        "tags": sorted(subscriber.tags.values_list("name", flat=True)),
        "subscriptions": [_export_subscription(s) for s in subscriptions],
        "suppression": suppression and {"reason": suppression.reason, "created_at": _iso(suppression.created_at)},
        "exported_at": _iso(timezone.now()),
    }


def _export_subscription(s):
    return {
        "list": s.mailing_list.name,
        "list_id": str(s.mailing_list.public_id),
        "status": s.status,
        "source": s.source,
        "created_at": _iso(s.created_at),
        "consent": {"at": _iso(s.consent_at), "ip": s.consent_ip, "user_agent": s.consent_user_agent,
                    "form": s.consent_form, "text": s.consent_text},
        "confirmed_at": _iso(s.confirmed_at),
        "confirm_ip": s.confirm_ip,
        "unsubscribed_at": _iso(s.unsubscribed_at),
        "unsubscribe_reason": s.unsubscribe_reason,
        "unsubscribe_ip": s.unsubscribe_ip,
    }


# --- Confirmation mail -------------------------------------------------------------------


def request_confirmation(subscription):
    """Queue the list's confirmation mail for an unconfirmed subscription; returns whether one was queued.

    Never for a suppressed or blocklisted address, and at most one per address
    per 10 minutes and three per 24 hours across all lists. The mail is sent by
    a Celery task after the surrounding transaction commits.
    """
    from .tasks import send_confirmation  # tasks call back into this module

    subscriber = subscription.subscriber
    if subscription.status != Subscription.UNCONFIRMED or subscriber.status == Subscriber.BLOCKLISTED:
        return False
    if is_suppressed(subscriber.email) or not _take_confirmation_slot(subscriber.email):
        return False
    subscription_id = subscription.pk
    # robust: a broker outage must not turn a recorded signup into an error page; the person can ask again.
    transaction.on_commit(lambda: send_confirmation.delay(subscription_id), robust=True)
    return True


def _take_confirmation_slot(email):
    """Sliding limits in the shared cache: a cooldown key, then one of three day-long slots.

    autoresponder.ratelimit counts fixed windows, which would let two mails
    through within seconds across a window boundary; `cache.add` (SET NX on
    Redis) is atomic, so these limits hold exactly across processes.
    """
    ident = salted_hmac("lists.confirmation-limit", email.strip().lower()).hexdigest()[:32]
    if not cache.add(f"confirm:cooldown:{ident}", 1, timeout=CONFIRMATION_COOLDOWN):
        return False
    return any(cache.add(f"confirm:day:{ident}:{slot}", 1, timeout=86400) for slot in range(CONFIRMATIONS_PER_DAY))


def deliver_confirmation(subscription_id):
    """Send the confirmation mail now (the Celery task's body); returns whether it was sent.

    Re-checks that the subscription still waits and the address is mailable, and
    claims the send with a conditional UPDATE so a task delivered twice mails once.
    """
    subscription = Subscription.objects.select_related("subscriber", "mailing_list").filter(pk=subscription_id).first()
    if subscription is None or subscription.status != Subscription.UNCONFIRMED:
        return False
    if subscription.subscriber.status == Subscriber.BLOCKLISTED or is_suppressed(subscription.subscriber.email):
        return False
    previous, now = subscription.confirmation_sent_at, timezone.now()
    claimed = Subscription.objects.filter(
        Q(confirmation_sent_at__isnull=True) | Q(confirmation_sent_at__lt=now - CONFIRMATION_CLAIM),
        pk=subscription_id, status=Subscription.UNCONFIRMED,
    ).update(confirmation_sent_at=now)
    if claimed != 1:
        return False  # another worker got there first
    try:
        confirmation.build_confirmation(subscription).send()
    except Exception:
        Subscription.objects.filter(pk=subscription_id, confirmation_sent_at=now).update(confirmation_sent_at=previous)
        raise
    return True
