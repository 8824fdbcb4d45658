"""
make bench-import: a CSV import of BENCH_ROWS rows (default 1,000,000: email,
name and three attributes; 1% invalid rows, 5% repeats of earlier addresses)
through lists.importing.run_import, against a raw COPY of the same valid rows
into the same table, then subscriber searches over the result.

Runs in its own database (ar_bench_import, created, migrated and dropped here;
BENCH_KEEP=1 keeps it for EXPLAIN work). The import runs in a child process,
which reports its own peak resident memory. The last line printed is one JSON
object: {"bench": "import", "rows", "rows_per_s", "copy_rows_per_s", "ratio",
"peak_rss_mb", "search_ms"}; details go to stderr.
"""

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BASE, SERVER, backend_cpu, environment, setup_django

DATABASE = "ar_bench_import"
ROWS = int(os.environ.get("BENCH_ROWS", 1_000_000))
SEARCH_REPEATS = 5

FIRST = ["Ada", "Alan", "Grace", "Linus", "Ken", "Dennis", "Barbara", "Edsger", "Donald", "John", "Margaret",
         "Tim", "Guido", "Larry", "Frances", "Radia", "Sophie", "Hedy", "Katherine", "Annie", "Jürgen", "José"]
LAST = ["Lovelace", "Turing", "Hopper", "Torvalds", "Thompson", "Ritchie", "Liskov", "Dijkstra", "Knuth",
        "McCarthy", "Hamilton", "Berners-Lee", "van Rossum", "Wall", "Allen", "Perlman", "Wilson", "Lamarr",
        "Johnson", "Easley", "Smith", "Nguyen"]
DOMAINS = ["gmail.com", "yahoo.com", "outlook.com", "example.org", "mail.de", "web.de", "proton.me",
           "icloud.com", "aol.com", "gmx.net", "company.co.uk"]
# Typical dashboard and API searches, newest 50 first.
SEARCHES = [
    {"query": ""},
    {"query": "gmail"},
    {"query": "lovelace"},
    {"query": "ada lovelace"},
    {"query": "plan:pro"},
    {"query": "country:DE plan:business"},
    {"query": "EXACT"},  # replaced by one address from the middle of the file
    {"query": "", "status": "confirmed", "list": True},
    {"query": "knuth", "status": "confirmed", "list": True},
]


def log(message):
    print(message, file=sys.stderr, flush=True)


# --- The file ------------------------------------------------------------------------------


def _person(n):
    first, last = FIRST[n % len(FIRST)], LAST[(n // 7) % len(LAST)]
    local = f"{first}.{last}".lower().replace("ü", "ue").replace("é", "e").replace(" ", "")
    return f"{local}{n}@{DOMAINS[(n // 3) % len(DOMAINS)]}", f"{first} {last}"


def generate(path, rows):
    """email,name,plan,country,score; 1% invalid rows, 5% repeat an earlier address in upper case."""
    rng = random.Random(7)
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("email,name,plan,country,score\n")
        for n in range(rows):
            draw = rng.random()
            if draw < 0.01:
                out.write(f"not-an-address-{n},Broken Row,free,DE,1\n")
                continue
            source = rng.randrange(n) if draw < 0.06 and n else n
            email, name = _person(source)
            if source != n:
                email = email.upper()
            plan, country = rng.choice(("free", "pro", "business")), rng.choice(("DE", "FR", "US", "GB", "NL", "ES"))
            out.write(f"{email},{name},{plan},{country},{rng.randrange(100)}\n")


# --- Children (run with the bench database's environment) ------------------------------------------


def _peak_rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _own_cpu():
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_import(csv_path):
    setup_django()
    from lists import importing
    from lists.models import ImportJob, MailingList

    newsletter = MailingList.objects.create(name="Bench")
    job = ImportJob.objects.create(mailing_list=newsletter, file=csv_path, original_name="bench.csv", confirmed=True)
    backend, own = backend_cpu(), _own_cpu()
    started = time.perf_counter()
    importing.run_import(job)
    seconds = time.perf_counter() - started
    cpu = {"python_cpu_s": _own_cpu() - own, "postgres_cpu_s": None if backend is None else backend_cpu() - backend}
    job.refresh_from_db()
    fields = ("status", "failure", "rows", "created", "updated", "skipped", "invalid")
    print(json.dumps({"seconds": seconds, "peak_rss_mb": _peak_rss_mb(), **cpu,
                      **{f: getattr(job, f) for f in fields}}))


def child_search():
    setup_django()
    from lists.models import MailingList
    from lists.search import search_subscribers

    newsletter = MailingList.objects.get(name="Bench")
    timings = {}
    for search in SEARCHES:
        if search["query"] == "EXACT":
            search = {"query": _person(ROWS // 2 + 1)[0]}
        kwargs = {"status": search.get("status"), "mailing_list": newsletter if search.get("list") else None}
        runs = []
        for _ in range(SEARCH_REPEATS):
            started = time.perf_counter()
            found = list(search_subscribers(search["query"], **kwargs)[:50])
            runs.append((time.perf_counter() - started) * 1000)
        timings[json.dumps(search)] = {"ms": statistics.median(runs), "found": len(found)}
    print(json.dumps(timings))


def child_copy(dump_path):
    """Truncate, then COPY the rows the import wrote, as a bare COPY would load them."""
    setup_django()
    from django.db import connection

    columns = "email, name, attributes, time_zone, status, created_at, updated_at"
    with connection.cursor() as cursor:
        with open(dump_path, "w", encoding="utf-8") as out:
            cursor.copy_expert(f"COPY (SELECT {columns} FROM lists_subscriber ORDER BY id) TO STDOUT", out)
        cursor.execute("TRUNCATE lists_subscriber CASCADE")
        backend = backend_cpu()
        started = time.perf_counter()
        with open(dump_path, encoding="utf-8") as source:
            cursor.copy_expert(f"COPY lists_subscriber ({columns}) FROM STDIN", source)
        seconds = time.perf_counter() - started
        cpu = None if backend is None else backend_cpu() - backend
        cursor.execute("SELECT count(*) FROM lists_subscriber")
        print(json.dumps({"seconds": seconds, "rows": cursor.fetchone()[0], "postgres_cpu_s": cpu}))


# --- The parent ------------------------------------------------------------------------------------


def _psql(sql):
    subprocess.run(["psql", f"{SERVER}/postgres", "-qc", sql], check=True, stdout=subprocess.DEVNULL)


def _child(env, *args):
    result = subprocess.run([sys.executable, __file__, *args], env=env, cwd=BASE, check=True,
                            stdout=subprocess.PIPE, text=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    work = Path(tempfile.mkdtemp(prefix="bench-import-"))
    env = environment(DATABASE, work / "data")
    try:
        log(f"load before: {os.getloadavg()}")
        started = time.perf_counter()
        generate(work / "subscribers.csv", ROWS)
        log(f"generated {ROWS:,} rows ({(work / 'subscribers.csv').stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - started:.1f} s")
        _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
        _psql(f"CREATE DATABASE {DATABASE}")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=BASE, check=True)
        imported = _child(env, "--import", str(work / "subscribers.csv"))
        log(f"import: {imported}")
        if imported["status"] != "done":
            raise SystemExit(f"The import failed: {imported['failure']}")
        searches = _child(env, "--search")
        for query, timing in searches.items():
            log(f"search {query}: {timing['ms']:.1f} ms, {timing['found']} found")
        copied = _child(env, "--copy", str(work / "dump.tsv"))
        log(f"raw COPY: {copied}")
        if imported["postgres_cpu_s"] is not None and copied["postgres_cpu_s"] is not None:
            cpu = imported["postgres_cpu_s"] + imported["python_cpu_s"]
            log(f"CPU seconds: import {cpu:.1f} (Postgres {imported['postgres_cpu_s']:.1f} + Python "
                f"{imported['python_cpu_s']:.1f}, partly in parallel), raw COPY {copied['postgres_cpu_s']:.1f}")
        log(f"load after: {os.getloadavg()}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not os.environ.get("BENCH_KEEP"):
            _psql(f"DROP DATABASE IF EXISTS {DATABASE}")
    rows_per_s = ROWS / imported["seconds"]
    copy_rows_per_s = copied["rows"] / copied["seconds"]
    print(json.dumps({
        "bench": "import", "rows": ROWS, "rows_per_s": round(rows_per_s), "copy_rows_per_s": round(copy_rows_per_s),
        "ratio": round(rows_per_s / copy_rows_per_s, 3), "peak_rss_mb": round(imported["peak_rss_mb"], 1),
        "search_ms": round(statistics.median(t["ms"] for t in searches.values()), 1),
    }))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--import":
        child_import(sys.argv[2])
    elif len(sys.argv) > 1 and sys.argv[1] == "--search":
        child_search()
    elif len(sys.argv) > 1 and sys.argv[1] == "--copy":
        child_copy(sys.argv[2])
    else:
        main()
