"""Warm-up and brakes on the dashboard pages, without touching their views:
`{% load guardrails %}` then `{% broadcast_brakes broadcast %}`, `{% warmup_wait "broadcast" broadcast.pk %}`
or `{% backend_warmup backend %}`."""

from django import template

from .. import brakes, warmup

register = template.Library()


@register.inclusion_tag("campaigns/guardrails/_brakes.html")
def broadcast_brakes(broadcast):
    return {"brakes": brakes.summary(broadcast)}


@register.inclusion_tag("campaigns/guardrails/_warmup_wait.html")
def warmup_wait(scope, pk):
    """The plain note of a broadcast or sequence waiting for tomorrow's warm-up allowance."""
    return {"text": warmup.waiting(scope, pk)}


@register.inclusion_tag("campaigns/guardrails/_backend_warmup.html")
def backend_warmup(backend):
    return {"backend": backend, "warmup": warmup.status(backend)}


@register.inclusion_tag("campaigns/guardrails/_domain_warmup.html")
def domain_warmup(domain):
    """A sending domain's warm-up: day, cap and what mail From it used today, through every backend."""
    return {"domain": domain, "warmup": warmup.status(domain, key=f"d{domain.pk}")}
