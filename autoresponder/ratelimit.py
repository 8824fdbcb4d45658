"""
Fixed-window counters in the shared cache (Redis in production), for abuse limits
such as signups per IP or login attempts. Not for sending rates, which need
tighter guarantees (see campaigns).
"""

import hashlib
import time

from django.core.cache import cache


def _key(scope, ident, window):
    digest = hashlib.sha256(str(ident).encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}:{int(time.time() // window)}"


def hit(scope, ident, *, limit, window):
    """Count one attempt; True while the attempts in this window are within `limit`."""
    key = _key(scope, ident, window)
    if cache.add(key, 1, timeout=window + 5):
        return limit >= 1
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=window + 5)
        count = 1
    return count <= limit


def is_limited(scope, ident, *, limit, window):
    """True when `limit` attempts were already counted in this window (does not count)."""
    return (cache.get(_key(scope, ident, window)) or 0) >= limit


def client_ip(request):
    """The client address. Behind a proxy, set SECURE_PROXY_SSL_HEADER and let the proxy
    overwrite REMOTE_ADDR (gunicorn --forwarded-allow-ips); X-Forwarded-For is not trusted."""
    return request.META.get("REMOTE_ADDR", "")
