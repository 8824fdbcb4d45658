"""
The double opt-in mail: the list's confirmation texts are Liquid templates
written by marketers, rendered with python-liquid (never Django templates) from
plain dicts, with limits so a template cannot run away.
"""

import logging
from email.utils import formataddr

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from liquid import Environment
from liquid.exceptions import LiquidError

from . import tokens
from .models import MailingList
from .validation import one_line

log = logging.getLogger(__name__)


class _Liquid(Environment):
    """Marketers' templates: python-liquid, with limits so a template cannot run away."""

    loop_iteration_limit = 1000
    output_stream_limit = 100_000


_liquid = _Liquid()


def render_template(source, context):
    """Render a marketer's Liquid template; raises liquid.exceptions.LiquidError."""
    return _liquid.from_string(source).render(**context)


def _render(source, fallback, context):
    try:
        return render_template(source, context)
    except LiquidError as exc:
        log.warning("Confirmation template failed (%s); using the default text.", exc)
        return render_template(fallback, context)


def _field_default(name):
    return MailingList._meta.get_field(name).default


def template_context(mailing_list, subscriber, url):
    """What a confirmation template can use: plain dicts, never model objects."""
    return {
        "list": {"name": mailing_list.name, "description": mailing_list.description,
                 "from_name": mailing_list.from_name},
        "subscriber": {"email": subscriber.email, "name": subscriber.name, "attributes": subscriber.attributes},
        "confirm_url": url,
    }


def build_confirmation(subscription):
    """The confirmation EmailMessage for `subscription`, rendered from the list's texts."""
    mailing_list, subscriber = subscription.mailing_list, subscription.subscriber
    url = tokens.confirm_url(subscription)
    context = template_context(mailing_list, subscriber, url)
    subject = _render(mailing_list.confirmation_subject, _field_default("confirmation_subject"), context)
    body = _render(mailing_list.confirmation_body, _field_default("confirmation_body"), context)
    if url not in body:  # the one thing this mail must carry
        body = f"{body.rstrip()}\n\n{url}\n"
    return EmailMultiAlternatives(
        subject=one_line(subject, 200) or _field_default("confirmation_subject"),
        body=body,
        from_email=_sender(mailing_list),
        to=[subscriber.email],
        reply_to=[mailing_list.reply_to] if mailing_list.reply_to else None,
    )


def _sender(mailing_list):
    if not mailing_list.from_email:
        return settings.DEFAULT_FROM_EMAIL
    return formataddr((one_line(mailing_list.from_name, 200), mailing_list.from_email))
