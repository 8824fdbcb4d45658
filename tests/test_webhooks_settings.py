"""Production refuses to start without the ESP webhooks' shared secret."""

import pytest

from tests.test_settings import manage, without

pytestmark = pytest.mark.slow  # each test starts a manage.py process


def test_production_refuses_to_start_without_the_webhook_secret(tmp_path):
    result = manage("check", env=without("ANYMAIL_WEBHOOK_SECRET"), tmp_path=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("Configuration error: ANYMAIL_WEBHOOK_SECRET is not set.")


def test_a_webhook_secret_without_a_colon_is_refused(tmp_path):
    result = manage("check", env=without("ANYMAIL_WEBHOOK_SECRET", ANYMAIL_WEBHOOK_SECRET="justonestring"),
                    tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Configuration error: ANYMAIL_WEBHOOK_SECRET must be user:password (two random strings joined by a colon).")


def test_development_runs_without_a_webhook_secret(tmp_path):
    result = manage("check", env={"DEBUG": "1"}, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
