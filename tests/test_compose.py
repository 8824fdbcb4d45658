"""docker-compose.yml cannot run here (no Docker engine), so its wiring is checked by reading it."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
services = compose["services"]


def test_compose_has_the_whole_stack():
    assert {"postgres", "redis", "web", "worker", "beat", "migrate"} <= set(services)


def test_app_services_run_the_right_commands():
    assert services["web"]["command"][:2] == ["gunicorn", "autoresponder.wsgi:application"]
    assert services["worker"]["command"][:4] == ["celery", "-A", "autoresponder", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "autoresponder", "beat"]
    assert services["migrate"]["command"] == ["python", "manage.py", "migrate", "--noinput"]


def test_app_services_are_wired_to_postgres_and_redis_by_service_name():
    for name in ("web", "worker", "beat", "migrate"):
        env = services[name]["environment"]
        assert "@postgres:5432/autoresponder" in env["DATABASE_URL"]
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379/")
        assert env["REDIS_URL"].startswith("redis://redis:6379/")
        assert "SECRET_KEY" in env and "SITE_URL" in env and "ALLOWED_HOSTS" in env
        assert env["DATA_DIR"] == "/data"
        assert services[name]["build"] == "."


def test_app_waits_for_healthy_databases_and_migrations():
    for name in ("web", "worker", "beat"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert services["web"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_long_running_service_has_a_healthcheck_or_is_beat():
    for name in ("postgres", "redis", "web", "worker"):
        assert services[name]["healthcheck"]["test"], name
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])


def test_data_lives_in_named_volumes():
    assert set(compose["volumes"]) == {"pgdata", "redisdata", "appdata"}
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]
    assert "appdata:/data" in services["web"]["volumes"]


def test_dockerfile_builds_the_image_compose_uses():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11" in dockerfile
    assert "pip install -r requirements.txt" in dockerfile
    assert "collectstatic --noinput" in dockerfile
    assert "USER app" in dockerfile


def test_postgres_starts_with_settings_for_a_write_heavy_ledger():
    command = services["postgres"]["command"]
    assert command[0] == "postgres"
    settings = dict(arg.split("=", 1) for arg in command[1:] if arg != "-c")
    assert settings == {"shared_buffers": "512MB", "max_wal_size": "4GB", "checkpoint_timeout": "15min",
                        "checkpoint_completion_target": "0.9", "wal_compression": "on"}
