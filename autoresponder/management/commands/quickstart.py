"""
`manage.py quickstart`: what `make run` calls once the virtualenv is ready.

Migrates, collects static files, creates a first owner account when there is
no user yet (and says how to sign in), then runs the web server, a Celery
worker and the Celery beat scheduler in the foreground until Ctrl-C. If any of
them dies, the others are stopped too, so a half-running app never lingers.
"""

import os
import secrets
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import BaseCommand, call_command

from autoresponder.roles import grant


class Command(BaseCommand):
    help = "Prepare the database and run web, worker and scheduler until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
        parser.add_argument("--web-only", action="store_true", help="Run no worker or scheduler.")

    def handle(self, *args, host, port, web_only, **options):
        self.stdout.write("Preparing the database…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        self._first_user(host, port)
        processes = self._start(host, port, web_only)
        self._supervise(processes)

    def _first_user(self, host, port):
        User = get_user_model()
        url = f"http://{host}:{port}/"
        if User.objects.exists():
            self.stdout.write(f"Open {url} and sign in with your account.")
            return
        password = secrets.token_urlsafe(12)
        user = User.objects.create_superuser("admin", "", password)
        grant(user, "owner")
        (settings.DATA_DIR / "admin-password.txt").write_text(password + "\n")
        (settings.DATA_DIR / "admin-password.txt").chmod(0o600)
        self.stdout.write(self.style.SUCCESS(
            f"\nCreated the first account.\n  Open {url}\n  Username: admin\n  Password: {password}\n"
            f"(also saved in {settings.DATA_DIR / 'admin-password.txt'}; change it with "
            "`python manage.py changepassword admin`)\n"
        ))

    def _start(self, host, port, web_only):
        python = sys.executable
        commands = {
            "web": [python, "-m", "gunicorn", "autoresponder.wsgi:application", "--bind", f"{host}:{port}",
                    "--workers", "2", "--threads", "4", "--access-logfile", "-", "--log-level", "warning"],
        }
        if not web_only:
            commands["worker"] = [python, "-m", "celery", "-A", "autoresponder", "worker",
                                  "--loglevel", "INFO", "--concurrency", "2"]
            commands["scheduler"] = [python, "-m", "celery", "-A", "autoresponder", "beat",
                                     "--loglevel", "INFO", "--schedule", settings.CELERY_BEAT_SCHEDULE_FILENAME]
        processes = {}
        for name, command in commands.items():
            # Own process group, so Ctrl-C reaches them once, through us.
            processes[name] = subprocess.Popen(command, start_new_session=True)
            self.stdout.write(f"Started {name} (pid {processes[name].pid})")
        self.stdout.write(self.style.SUCCESS(f"Autoresponder runs at http://{host}:{port}/ — press Ctrl-C to stop."))
        return processes

    def _supervise(self, processes):
        stopping = []

        def stop(signum, frame):
            stopping.append(signum)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        exit_code = 0
        while not stopping:
            dead = [name for name, p in processes.items() if p.poll() is not None]
            if dead:
                self.stderr.write(f"{', '.join(dead)} stopped unexpectedly; stopping the rest.")
                exit_code = 1
                break
            time.sleep(0.5)
        self.stdout.write("Stopping…")
        for p in processes.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in processes.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.stdout.write("Stopped.")
        sys.exit(exit_code)
