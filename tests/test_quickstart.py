"""The README's run command, on a fresh data folder, with no services configured."""

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "EMAIL_URL", "SECRET_KEY", "SITE_URL",
                     "ALLOWED_HOSTS", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_ALLOW_ASYNC_UNSAFE")


def wait_for(url, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, response.read().decode()
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture
def quickstart(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
    env.update(DEBUG="1", DATA_DIR=str(tmp_path / "data"))
    log = open(tmp_path / "quickstart.log", "w+")
    process = subprocess.Popen(
        [sys.executable, "manage.py", "quickstart", "--port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield process, f"http://127.0.0.1:{port}", tmp_path / "data", log
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    log.close()


@pytest.mark.slow
def test_quickstart_serves_the_login_page_and_stops_cleanly_on_ctrl_c(quickstart):
    process, base, data, log = quickstart

    # when the app has started
    status, body = wait_for(f"{base}/accounts/login/", timeout=180)

    # then the login page answers, and the first account works with the printed password
    assert status == 200 and "Sign in to Autoresponder" in body
    log.seek(0)
    printed = re.search(r"Password: (\S+)", log.read())
    assert printed, "the command must print the first account's password"
    password = printed.group(1)
    assert (data / "admin-password.txt").read_text().strip() == password
    assert (data / "autoresponder.sqlite3").exists()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(f"{base}/accounts/login/").read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    form = urlencode({"username": "admin", "password": password, "csrfmiddlewaretoken": token}).encode()
    request = urllib.request.Request(f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/accounts/login/"})
    overview = opener.open(request).read().decode()
    assert "<h1>Overview</h1>" in overview

    # when Ctrl-C arrives, web, worker and scheduler all stop
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=30) == 0
    log.seek(0)
    output = log.read()
    assert "Started worker" in output and "Started scheduler" in output and "Stopped." in output
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{base}/accounts/login/", timeout=2)
