"""Configuration errors are one plain line naming the variable, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "a-production-secret-key-that-is-long-enough-0123456789",
    "SITE_URL": "https://mail.example.com",
    "ALLOWED_HOSTS": "mail.example.com",
    "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/autoresponder",
    "CELERY_BROKER_URL": "redis://127.0.0.1:6379/2",
    "REDIS_URL": "redis://127.0.0.1:6379/1",
    "EMAIL_URL": "smtp+tls://mailer:secret@smtp.example.com:587",
    "ANYMAIL_WEBHOOK_SECRET": "hook:secret",
}


def manage(*args, env, tmp_path):
    # DJANGO_ALLOW_ASYNC_UNSAFE is set for the browser tests in this process; a real deployment has none.
    dropped = ("DEBUG", "DATA_DIR", "DJANGO_ALLOW_ASYNC_UNSAFE")
    clean = {k: v for k, v in os.environ.items() if k not in PRODUCTION and k not in dropped}
    clean.update(env)
    clean["DATA_DIR"] = str(tmp_path)
    clean.pop("PYTEST_CURRENT_TEST", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=120
    )


def without(name, **overrides):
    env = {k: v for k, v in PRODUCTION.items() if k != name}
    env.update(overrides)
    return env


@pytest.mark.parametrize("name", ["SECRET_KEY", "SITE_URL", "ALLOWED_HOSTS"])
def test_production_refuses_to_start_without_a_required_variable(tmp_path, name):
    result = manage("check", env=without(name), tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"Configuration error: {name} is not set.")


@pytest.mark.parametrize(
    "name, value, expected",
    [
        ("DATABASE_URL", "mysql-ish://nope", "DATABASE_URL='mysql-ish://nope' must start with one of"),
        ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
        ("EMAIL_URL", "carrier-pigeon://coop", "EMAIL_URL='carrier-pigeon://coop' must start with one of"),
        ("EMAIL_URL", "smtp://mail.example.com:notaport", "has a port that is not a number"),
        ("CELERY_BROKER_URL", "kafka://x", "CELERY_BROKER_URL='kafka://x' must start with one of"),
        ("SITE_URL", "mail.example.com", "SITE_URL='mail.example.com' must start with one of"),
        ("TIME_ZONE", "Mars/Olympus", "TIME_ZONE='Mars/Olympus' is not a known time zone"),
        ("SECRET_KEY", "short", "SECRET_KEY is too short"),
        ("DATABASE_CONN_MAX_AGE", "soon", "DATABASE_CONN_MAX_AGE='soon' is not a whole number"),
    ],
)
def test_a_malformed_variable_gives_one_line_naming_it(tmp_path, name, value, expected):
    result = manage("check", env=without(name, **{name: value}), tmp_path=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Configuration error: ") and expected in lines[0]


def test_secret_key_can_come_from_a_file(tmp_path):
    key_file = tmp_path / "secret"
    key_file.write_text("a-production-secret-key-read-from-a-file-0123456789\n")
    env = without("SECRET_KEY", SECRET_KEY_FILE=str(key_file))
    result = manage("shell", "-v", "0", "-c", "from django.conf import settings; print(settings.SECRET_KEY)", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "a-production-secret-key-read-from-a-file-0123456789"


def test_check_deploy_is_clean_in_production(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION, tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_development_defaults_need_no_configuration(tmp_path):
    result = manage(
        "shell", "-v", "0", "-c",
        "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.EMAIL_BACKEND)",
        env={"DEBUG": "1"}, tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3", "filesystem://", "autoresponder.outbox.OutboxBackend",
    ]
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_email_url_configures_smtp_with_starttls(tmp_path):
    env = dict(PRODUCTION, EMAIL_URL="smtp+tls://user%40x:p%2Fw@smtp.example.com:2525")
    result = manage(
        "shell", "-v", "0", "-c",
        "from django.conf import settings as s; print(s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_HOST_USER, s.EMAIL_HOST_PASSWORD, s.EMAIL_USE_TLS, s.EMAIL_USE_SSL)",
        env=env, tmp_path=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["smtp.example.com", "2525", "user@x", "p/w", "True", "False"]


def test_collectstatic_works_in_production_mode(tmp_path):
    """The Docker build runs this; a broken reference in a stylesheet or script would fail it."""
    env = dict(PRODUCTION, STATIC_ROOT=str(tmp_path / "static"))
    result = manage("collectstatic", "--noinput", env=env, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "static" / "staticfiles.json").exists()
