"""
Autoresponder settings, read top to bottom, driven by the environment.

With nothing set, a fresh checkout runs on embedded defaults (a SQLite database
and a filesystem Celery broker in DATA_DIR, mail captured in a local outbox) in
development mode. Set DEBUG=0 (or leave DEBUG unset and set SITE_URL to an
https address) for production, where SECRET_KEY, SITE_URL and ALLOWED_HOSTS are
required. Every secret can be given as <NAME>_FILE, a path to read it from.

A missing or malformed variable stops the process with one line naming it.
"""

import ipaddress
import os
import secrets
import sys
from pathlib import Path
from urllib.parse import urlsplit

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.FileAwareEnv()


def fail(message):
    """Stop with one readable line instead of a traceback."""
    sys.stderr.write(f"Configuration error: {message}\n")
    sys.exit(2)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name, default):
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    fail(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def env_int(name, default):
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        fail(f"{name}={raw!r} is not a whole number.")


def env_url(name, default, schemes):
    """A URL variable whose scheme must be one of `schemes`."""
    try:
        raw = env.str(name, default=default)
    except (ImproperlyConfigured, OSError) as exc:  # unreadable <NAME>_FILE
        fail(f"{name}: {exc}")
    parts = urlsplit(raw)
    if parts.scheme not in schemes:
        fail(f"{name}={raw!r} must start with one of: " + ", ".join(f"{s}://" for s in schemes))
    return raw


# --- Mode ---------------------------------------------------------------------

DATA_DIR = Path(os.environ.get("DATA_DIR") or BASE_DIR / "data").resolve()
DEBUG = env_bool("DEBUG", default=False)
PRODUCTION = not DEBUG
TESTING = "pytest" in sys.modules

# --- Secrets and public address ------------------------------------------------


def _development_secret_key():
    """A random key kept in DATA_DIR so sessions survive restarts in development."""
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


try:
    SECRET_KEY = env.str("SECRET_KEY", default="")
except (ImproperlyConfigured, OSError) as exc:
    fail(f"SECRET_KEY: {exc}")
if not SECRET_KEY:
    if PRODUCTION:
        fail("SECRET_KEY is not set. Set it (or SECRET_KEY_FILE) to a long random string, "
             "e.g. the output of: python -c 'import secrets; print(secrets.token_urlsafe(50))'")
    SECRET_KEY = _development_secret_key()
elif len(SECRET_KEY) < 32:
    fail("SECRET_KEY is too short; use at least 32 random characters.")

if PRODUCTION and not os.environ.get("SITE_URL"):
    fail("SITE_URL is not set. Set it to the public base address of this app, e.g. https://mail.example.com")
SITE_URL = env_url("SITE_URL", "http://127.0.0.1:8000", ("http", "https")).rstrip("/")
SITE_HOST = urlsplit(SITE_URL).hostname or ""
if not SITE_HOST:
    fail(f"SITE_URL={SITE_URL!r} has no host name.")

if PRODUCTION and not os.environ.get("ALLOWED_HOSTS"):
    fail(f"ALLOWED_HOSTS is not set. Set it to the host names this app answers to, e.g. {SITE_HOST}")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", SITE_HOST])
CSRF_TRUSTED_ORIGINS = [f"{urlsplit(SITE_URL).scheme}://{urlsplit(SITE_URL).netloc}"]

# --- Applications -----------------------------------------------------------------

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "anymail",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "autoresponder.apps.AutoresponderConfig",
    "lists",
    "campaigns",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "autoresponder.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "autoresponder.urls"
WSGI_APPLICATION = "autoresponder.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "autoresponder.navigation.navigation",
            ],
        },
    },
]

# --- Database -----------------------------------------------------------------------

env_url("DATABASE_URL", "sqlite://", ("postgres", "postgresql", "pgsql", "sqlite"))
try:
    DATABASES = {
        "default": env.db_url(
            "DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'autoresponder.sqlite3'}"
        )
    }
except (ImproperlyConfigured, OSError, ValueError) as exc:
    fail(f"DATABASE_URL is malformed ({exc}); use postgres://user:password@host:5432/name")
if not DATABASES["default"].get("ENGINE"):
    fail("DATABASE_URL has an unknown scheme; use postgres://user:password@host:5432/name")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    # Web, worker and scheduler share one file: wait for the write lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache (rate limits, worker heartbeat); shared by every process -----------------

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    env_url("REDIS_URL", REDIS_URL, ("redis", "rediss", "unix"))
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }

# --- Celery: Postgres is the queue, Celery is the bell -------------------------------

CELERY_BROKER_URL = env_url(
    "CELERY_BROKER_URL", "filesystem://", ("redis", "rediss", "amqp", "filesystem", "memory")
)
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = DATA_DIR / "broker"
    for sub in ("queue", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    # Tasks are bells, not payloads: a lost one is rung again by the next beat.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# Periodic system jobs. Each app adds its own entries (see <app>/tasks.py).
CELERY_BEAT_SCHEDULE = {
    "heartbeat": {"task": "autoresponder.heartbeat", "schedule": 15.0},
    # Starts due broadcasts, reaps expired leases, rings send tasks (campaigns/sending.py).
    "campaigns-kick": {"task": "campaigns.kick", "schedule": float(env_int("SEND_KICK_SECONDS", 5))},
    # Enrolls newcomers into sequences and queues due steps (campaigns/scheduler.py).
    "campaigns-sequences": {
        "task": "campaigns.schedule_sequences", "schedule": float(env_int("SEQUENCE_TICK_SECONDS", 10)),
    },
    # Delivers due REST hook deliveries (retries, and any whose bell was lost) (campaigns/hooks.py).
    "campaigns-hooks": {"task": "campaigns.deliver_hooks", "schedule": float(env_int("HOOK_BEAT_SECONDS", 30))},
    "campaigns-hooks-prune": {"task": "campaigns.prune_hook_deliveries", "schedule": 3600.0},
    # Looks every sending domain's DKIM, SPF, DMARC and MX records up again (campaigns/domain_checks.py).
    "campaigns-check-domains": {"task": "campaigns.check_sending_domains", "schedule": 86400.0},
    # The sunset policy's daily count and run; hourly, the task itself claims one run a day (campaigns/sunset.py).
    "campaigns-sunset": {"task": "campaigns.sunset", "schedule": 3600.0},
}

# --- Outgoing mail --------------------------------------------------------------------
# EMAIL_URL is the default sending route: outbox:// (captured in DATA_DIR/outbox and
# shown in the dashboard), smtp:// (plain), smtp+tls:// (STARTTLS), smtps:// (TLS).

EMAIL_URL = env_url("EMAIL_URL", "outbox://", ("outbox", "smtp", "smtp+tls", "smtps", "console"))
OUTBOX_DIR = DATA_DIR / "outbox"
_email = urlsplit(EMAIL_URL)
if _email.scheme == "outbox":
    EMAIL_BACKEND = "autoresponder.outbox.OutboxBackend"
elif _email.scheme == "console":
    EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
else:
    from urllib.parse import unquote

    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    if not _email.hostname:
        fail(f"EMAIL_URL={EMAIL_URL!r} has no host name.")
    EMAIL_HOST = _email.hostname
    try:
        EMAIL_PORT = _email.port or {"smtps": 465, "smtp+tls": 587}.get(_email.scheme, 25)
    except ValueError:
        fail(f"EMAIL_URL={EMAIL_URL!r} has a port that is not a number.")
    EMAIL_HOST_USER = unquote(_email.username or "")
    EMAIL_HOST_PASSWORD = unquote(_email.password or "")
    EMAIL_USE_TLS = _email.scheme == "smtp+tls"
    EMAIL_USE_SSL = _email.scheme == "smtps"
    EMAIL_TIMEOUT = 30
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", f"Autoresponder <noreply@{SITE_HOST}>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# Domain of our own Message-IDs.
MESSAGE_ID_DOMAIN = os.environ.get("MESSAGE_ID_DOMAIN", SITE_HOST)
# Adds <mailto:ADDRESS?subject=unsubscribe> to List-Unsubscribe, for a mailbox you process.
UNSUBSCRIBE_MAILTO = os.environ.get("UNSUBSCRIBE_MAILTO", "")
# SpamAssassin's spamd for the pre-send check (campaigns/presend.py): tcp://127.0.0.1:783 or
# unix:///path/to/socket. Empty: the check does not ask SpamAssassin.
SPAMD_URL = os.environ.get("SPAMD_URL", "")

# Sending engine knobs (campaigns/sending.py). A batch is claimed with a lease and
# sent over one connection; 250 rows cost about 8 % less CPU per message than 100
# (the claim and the batch's checks are paid per batch: bench-send, 1,028 against
# 1,120 µs a message in two runs back to back) and slow backends get fewer
# (campaigns.sending.batch_limit: at most ~30 s of sending per lease). CONCURRENCY is how many send tasks one broadcast
# runs at once (match your worker processes); a task sends for SLICE seconds, then
# rings itself again so other work gets a turn.
SEND_BATCH_SIZE = env_int("SEND_BATCH_SIZE", 250)
SEND_CONCURRENCY = env_int("SEND_CONCURRENCY", 4)
SEND_LEASE_SECONDS = env_int("SEND_LEASE_SECONDS", 300)
SEND_SLICE_SECONDS = env_int("SEND_SLICE_SECONDS", 30)
SEND_SLOT_TTL = env_int("SEND_SLOT_TTL", 60)
# Sequence scheduler knobs (campaigns/scheduler.py). A batch of due enrollments is
# claimed, turned into ledger rows and advanced in one transaction; 5,000 rows keep
# the per-statement overhead small (see BENCHMARKS.md, "Schedule"). The whole
# audience of a sequence is checked for newcomers at most every DISCOVERY seconds;
# a subscriber's own signup can ring campaigns.enroll_subscriber for a prompt welcome.
SEQUENCE_BATCH_SIZE = env_int("SEQUENCE_BATCH_SIZE", 5000)
SEQUENCE_DISCOVERY_SECONDS = env_int("SEQUENCE_DISCOVERY_SECONDS", 60)
# A large backlog of due steps is worked by this many database connections at once
# (one per core of the database machine is about right).
SEQUENCE_WORKERS = env_int("SEQUENCE_WORKERS", 2)

try:
    ANYMAIL = {"WEBHOOK_SECRET": env.str("ANYMAIL_WEBHOOK_SECRET", default="")}  # or ANYMAIL_WEBHOOK_SECRET_FILE
except (ImproperlyConfigured, OSError) as exc:
    fail(f"ANYMAIL_WEBHOOK_SECRET: {exc}")
# ESPs post bounces and complaints to /webhooks/anymail/<esp>/tracking/ with this user:password as
# HTTP basic auth (campaigns/webhooks.py); without it anyone could suppress any address.
if PRODUCTION and not ANYMAIL["WEBHOOK_SECRET"]:
    fail("ANYMAIL_WEBHOOK_SECRET is not set. Set it to two random strings as user:password, e.g. the output of: "
         "python -c 'import secrets; print(secrets.token_urlsafe(12) + \":\" + secrets.token_urlsafe(24))'")
if ANYMAIL["WEBHOOK_SECRET"] and ":" not in ANYMAIL["WEBHOOK_SECRET"]:
    fail("ANYMAIL_WEBHOOK_SECRET must be user:password (two random strings joined by a colon).")
# ESPs that sign their webhooks on top of the shared secret (campaigns/webhooks.py).
for _name in ("MAILGUN_WEBHOOK_SIGNING_KEY", "MANDRILL_WEBHOOK_KEY", "MANDRILL_WEBHOOK_URL",
              "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY"):
    try:
        _value = env.str(_name, default="")
    except (ImproperlyConfigured, OSError) as exc:
        fail(f"{_name}: {exc}")
    if _value:
        ANYMAIL[_name] = _value

# --- Tracking and the feedback loop (campaigns/events.py, inbound.py, policy.py) ----------------
# Opens and clicks go to a Redis list and are drained into Postgres in batches every
# TRACKING_DRAIN_SECONDS ("direct": written by the request itself; the default without Redis).
TRACKING_BUFFER = os.environ.get("TRACKING_BUFFER", "redis" if REDIS_URL else "direct")
if TRACKING_BUFFER not in ("redis", "direct"):
    fail(f"TRACKING_BUFFER={TRACKING_BUFFER!r} must be redis or direct.")
# Each web process pushes its hits to Redis every TRACKING_FLUSH_MS (0: one push per hit, as
# in the tests, where a request's hits must be in Redis when it returns).
TRACKING_FLUSH_MS = env_int("TRACKING_FLUSH_MS", 0 if TESTING else 100)
TRACKING_DRAIN_SECONDS = env_int("TRACKING_DRAIN_SECONDS", 2)
TRACKING_DRAIN_BATCH = env_int("TRACKING_DRAIN_BATCH", 5000)
# An open or click this soon after sending is a scanner or prefetcher, not a person.
TRACKING_SCANNER_SECONDS = env_int("TRACKING_SCANNER_SECONDS", 5)
# Return path of SMTP mail: bounces+<signed message id>@BOUNCE_DOMAIN (VERP). Deliver that
# domain's mail to the mailbox at BOUNCE_MAILBOX_URL (imaps://user:password@host:993/INBOX,
# imap://, pop3s://, pop3://; ?processed=Folder moves handled IMAP mail instead of deleting it).
BOUNCE_DOMAIN = os.environ.get("BOUNCE_DOMAIN", "")
BOUNCE_LOCAL_PART = os.environ.get("BOUNCE_LOCAL_PART", "bounces")
try:
    BOUNCE_MAILBOX_URL = env.str("BOUNCE_MAILBOX_URL", default="")  # or BOUNCE_MAILBOX_URL_FILE
except (ImproperlyConfigured, OSError) as exc:
    fail(f"BOUNCE_MAILBOX_URL: {exc}")
if BOUNCE_MAILBOX_URL and urlsplit(BOUNCE_MAILBOX_URL).scheme not in ("imap", "imaps", "pop3", "pop3s"):
    fail("BOUNCE_MAILBOX_URL must start with one of: imaps://, imap://, pop3s://, pop3:// "
         "(e.g. imaps://user:password@mail.example.com:993/INBOX)")
BOUNCE_MAILBOX_SECONDS = env_int("BOUNCE_MAILBOX_SECONDS", 60)
CELERY_BEAT_SCHEDULE["campaigns-drain-events"] = {
    "task": "campaigns.drain_events", "schedule": float(TRACKING_DRAIN_SECONDS),
}
if BOUNCE_MAILBOX_URL:
    CELERY_BEAT_SCHEDULE["campaigns-read-bounces"] = {
        "task": "campaigns.read_bounce_mailbox", "schedule": float(BOUNCE_MAILBOX_SECONDS),
    }

# DNS for the deliverability checks (autoresponder/dns.py): comma-separated IP[:port]
# ([IPv6]:port) of the resolvers to ask; empty uses the system's. Lookups give up after
# DNS_TIMEOUT_SECONDS (a person is often waiting on the answer).
DNS_NAMESERVERS = [_ns.strip() for _ns in os.environ.get("DNS_NAMESERVERS", "").split(",") if _ns.strip()]
for _ns in DNS_NAMESERVERS:
    _host, _port = (_ns[1:].partition("]")[0], _ns.partition("]:")[2] or "53") if _ns.startswith("[") else (
        _ns.partition(":")[::2] if _ns.count(":") == 1 else (_ns, "53"))
    try:
        ipaddress.ip_address(_host)
        if not 0 < int(_port) < 65536:
            raise ValueError
    except ValueError:
        fail(f"DNS_NAMESERVERS entry {_ns!r} must be an IP address with an optional port, "
             "e.g. 1.1.1.1, 127.0.0.1:5353 or [2606:4700::1111]:53")
DNS_TIMEOUT_SECONDS = env_int("DNS_TIMEOUT_SECONDS", 3)
# An import's MX check (lists/hygiene.py) stops after this many seconds; domains not answered by then
# are not flagged.
HYGIENE_MX_SECONDS = env_int("HYGIENE_MX_SECONDS", 120)

# Key for secrets stored in the database (backend credentials, DKIM keys). Derived
# from SECRET_KEY unless set; changing it makes stored secrets unreadable.
try:
    ENCRYPTION_KEY = env.str("ENCRYPTION_KEY", default="") or SECRET_KEY
except (ImproperlyConfigured, OSError) as exc:
    fail(f"ENCRYPTION_KEY: {exc}")

# --- REST API (autoresponder/api.py) and REST hooks (campaigns/hooks.py) ----------------

REST_FRAMEWORK = {
    # Tokens for other systems (Authorization: Token <key>); the session (with CSRF) for the browser.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["autoresponder.api_base.RolePermission"],
    "DEFAULT_PAGINATION_CLASS": "autoresponder.api_base.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["autoresponder.api_base.TokenThrottle"],
    # Requests per token (per user for the browser session) and minute, by scope.
    "DEFAULT_THROTTLE_RATES": {
        "read": f"{env_int('API_READ_PER_MINUTE', 1200)}/min",
        "write": f"{env_int('API_WRITE_PER_MINUTE', 300)}/min",
        "bulk": f"{env_int('API_BULK_PER_MINUTE', 60)}/min",
    },
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "autoresponder.api_base.exception_handler",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Autoresponder API",
    "DESCRIPTION": "Lists, subscribers, content, broadcasts, sequences and REST hooks. "
                   "Authenticate with `Authorization: Token <key>` (create a key under API in the dashboard).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "autoresponder.api_base.document_errors",
    ],
    "ENUM_NAME_OVERRIDES": {
        "SubscriberStatusEnum": "lists.models.Subscriber.STATUS_CHOICES",
        "SubscriptionStatusEnum": "lists.models.Subscription.STATUS_CHOICES",
        "BroadcastStatusEnum": "campaigns.models.Broadcast.STATUS_CHOICES",
    },
}
# Hook targets on loopback are refused in production (SSRF); tests and local development allow them.
HOOKS_ALLOW_LOOPBACK = env_bool("HOOKS_ALLOW_LOOPBACK", default=DEBUG or TESTING)

# --- Auth, sessions, security ---------------------------------------------------------

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if env_bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if PRODUCTION:
    _https = SITE_URL.startswith("https://")
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", default=_https)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", default=_https)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _https else 0)
    # Both reach beyond this app (every subdomain; browsers' preload lists), so they are
    # the operator's call, off by default; the matching deploy warnings are silenced.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", default=False)
    # The health endpoint is probed over plain HTTP inside the container network.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]

# --- Internationalisation ----------------------------------------------------------------

LANGUAGE_CODE = "en"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
try:
    import zoneinfo

    zoneinfo.ZoneInfo(TIME_ZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError):
    fail(f"TIME_ZONE={TIME_ZONE!r} is not a known time zone; use a name such as UTC or Europe/Berlin.")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or DATA_DIR / "static")
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
MEDIA_ROOT = DATA_DIR / "media"
# Largest CSV file the dashboard accepts for an import (the command line has no limit).
IMPORT_MAX_BYTES = env_int("IMPORT_MAX_BYTES", 512 * 1024 * 1024)
WHITENOISE_USE_FINDERS = DEBUG or TESTING
if WHITENOISE_USE_FINDERS:
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns when it is missing

# --- Logging -----------------------------------------------------------------------------------

LOG_LEVEL = os.environ.get("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
