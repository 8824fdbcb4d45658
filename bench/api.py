"""
make bench-api: bulk upsert of subscribers through the REST API, over real
HTTP to gunicorn on loopback (POST /api/v1/subscribers/bulk/, 10,000 per
request), against the same service called in-process (lists.bulk.upsert_subscribers,
no HTTP, no JSON) on as many other new addresses, in the same run.

Two passes through the API: new addresses (creates) and the same addresses
again with changed names and attributes (updates). Runs in its own database
(ar_bench_api, created, migrated and dropped here; BENCH_KEEP=1 keeps it).
BENCH_N sets how many subscribers (default 50,000), BENCH_WORKERS gunicorn's
worker processes (default 2) and BENCH_CLIENTS the requests in flight (default 2).

The last line printed is one JSON object: {"bench": "api", "upsert_per_s", …};
details go to stderr.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from common import BASE, SERVER, environment, setup_django

DATABASE = "ar_bench_api"
N = int(os.environ.get("BENCH_N", 50_000))
BATCH = 10_000
WORKERS = int(os.environ.get("BENCH_WORKERS", 2))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", 2))
TARGET = 5_000


def log(message):
    print(message, file=sys.stderr, flush=True)


def psql(sql):
    subprocess.run(["psql", f"{SERVER}/postgres", "-qc", sql], check=True, capture_output=True)


def manage(env, *args):
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE, env=env, check=True)


def people(prefix, count, *, renamed=False):
    """Subscribers as an API client sends them: email, name, three attributes."""
    suffix = " Jr" if renamed else ""
    return [{"email": f"{prefix}{n}@example.org", "name": f"Reader {n}{suffix}",
             "attributes": {"plan": ("free", "pro", "team")[n % 3], "country": ("DE", "FR", "US")[n % 3],
                            "score": n % 100 + (1 if renamed else 0)}} for n in range(count)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(env, port):
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "autoresponder.wsgi", "-w", str(WORKERS), "-b", f"127.0.0.1:{port}",
         "--timeout", "120", "--log-level", "warning"], cwd=BASE, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            return process
        except requests.RequestException:
            time.sleep(0.3)
    process.terminate()
    raise SystemExit("gunicorn did not start within 60 s")


def api_pass(url, token, list_id, items):
    """POST every batch (CLIENTS at a time); returns (seconds, summed counts)."""
    bodies = [json.dumps({"list": list_id, "subscribers": items[i:i + BATCH]}).encode()
              for i in range(0, len(items), BATCH)]
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    with requests.Session() as session:
        session.post(url, data=json.dumps({"list": list_id, "subscribers": [{"email": "warm@example.org"}]}),
                     headers=headers).raise_for_status()  # connections and caches warm, outside the timing

        def send(body):
            response = session.post(url, data=body, headers=headers, timeout=300)
            response.raise_for_status()
            return response.json()

        started = time.perf_counter()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(send, bodies))
        seconds = time.perf_counter() - started
    totals = {k: sum(r[k] for r in results) for k in ("created", "updated", "skipped", "invalid")}
    return seconds, totals


def service_pass(list_id, items):
    """The same batches through lists.bulk in this process, CLIENTS threads (one connection each)."""
    from django.db import connection

    from lists import bulk
    from lists.models import MailingList

    mailing_list = MailingList.objects.get(pk=list_id)

    def upsert(batch):
        try:
            return bulk.upsert_subscribers(mailing_list, batch).created
        finally:
            connection.close()

    batches = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENTS) as pool:
        created = sum(pool.map(upsert, batches))
    return time.perf_counter() - started, created


def main():
    data_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    (data_dir / "static").mkdir()
    env = environment(DATABASE, data_dir, REDIS_URL=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
                      API_BULK_PER_MINUTE="100000", DATABASE_CONN_MAX_AGE="600")
    psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    psql(f"CREATE DATABASE {DATABASE}")
    gunicorn = None
    try:
        log(f"Migrating {DATABASE}…")
        manage(env, "migrate", "-v0")
        os.environ.update(env)
        setup_django()
        from django.contrib.auth.models import User
        from rest_framework.authtoken.models import Token

        from autoresponder.roles import grant
        from lists.models import MailingList

        user = User.objects.create_user("bench")
        grant(user, "editor")
        token = Token.objects.create(user=user).key
        api_list = MailingList.objects.create(name="API bench", opt_in="single")
        service_list = MailingList.objects.create(name="Service bench", opt_in="single")
        port = free_port()
        gunicorn = start_gunicorn(env, port)
        url = f"http://127.0.0.1:{port}/api/v1/subscribers/bulk/"

        log(f"{N:,} subscribers, {BATCH:,} per request, {WORKERS} gunicorn workers, {CLIENTS} requests in flight")
        create_s, created = api_pass(url, token, api_list.pk, people("api", N))
        log(f"API create pass: {create_s:.2f} s ({N / create_s:,.0f}/s) {created}")
        update_s, updated = api_pass(url, token, api_list.pk, people("api", N, renamed=True))
        log(f"API update pass: {update_s:.2f} s ({N / update_s:,.0f}/s) {updated}")
        gunicorn.terminate()
        gunicorn.wait(30)
        gunicorn = None
        service_s, service_created = service_pass(service_list.pk, people("svc", N))
        log(f"Service in-process (baseline): {service_s:.2f} s ({N / service_s:,.0f}/s), {service_created} created")
        if created["created"] != N or updated["updated"] != N or service_created != N:
            raise SystemExit("The counts are wrong: the benchmark did not do the work it measured.")
        upsert_per_s = 2 * N / (create_s + update_s)
        result = {
            "bench": "api", "subscribers": N, "per_request": BATCH, "gunicorn_workers": WORKERS, "clients": CLIENTS,
            "create_per_s": round(N / create_s), "update_per_s": round(N / update_s),
            "upsert_per_s": round(upsert_per_s), "service_per_s": round(N / service_s),
            "ratio": round(upsert_per_s / (N / service_s), 2), "target_per_s": TARGET,
        }
        print(json.dumps(result))
    finally:
        if gunicorn is not None:
            gunicorn.terminate()
        if "django" in sys.modules and os.environ.get("DJANGO_SETTINGS_MODULE"):
            from django.db import connections

            connections.close_all()
        if not os.environ.get("BENCH_KEEP"):
            psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
