"""
A real SpamAssassin on loopback for the pre-send check's tests: Debian's spamd
(installed by scripts/services.sh) with the rules Debian ships, started once per
session on a free port, local tests only (`--local`: no DNS blocklists, no
network), Bayes off so a test run does not teach it anything, stopped at the end.
It answers within about two seconds of starting.
"""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.smtp import free_port

SPAMD = shutil.which("spamd") or "/usr/sbin/spamd"
# The test message every SpamAssassin scores 1,000 (the GTUBE rule), so a test knows it is spam.
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


class Spamd:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="ar-spamd-"))
        self.port = free_port()
        self.process = None

    @property
    def url(self):
        return f"tcp://127.0.0.1:{self.port}"

    def start(self):
        if not Path(SPAMD).exists():
            pytest.fail("SpamAssassin's spamd is not installed: run `make services` (it installs spamd).")
        self.root.chmod(0o755)
        command = [
            SPAMD, "--local", f"--listen=127.0.0.1:{self.port}", "--max-children=1", "--min-children=1",
            "--nouser-config", f"--helper-home-dir={self.root}", f"--pidfile={self.root}/spamd.pid",
            "--syslog=stderr", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0",
        ]
        if os.geteuid() == 0:  # spamd will not check mail as root
            command.append(f"--username={pwd.getpwnam('nobody').pw_name}")
        self.log = open(self.root / "spamd.log", "wb")
        # Its own process group: spamd forks a child to scan, and both go at the end.
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait()
        return self

    def _wait(self):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"spamd stopped: {(self.root / 'spamd.log').read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                    conn.sendall(b"PING SPAMC/1.5\r\n\r\n")
                    if conn.recv(100).startswith(b"SPAMD/1.5 0 PONG"):
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail("spamd did not answer within 60 seconds.")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def spamd_server():
    server = Spamd().start()
    yield server
    server.stop()


@pytest.fixture
def spamd(spamd_server, settings):
    """The session's spamd, set as SPAMD_URL for the test."""
    settings.SPAMD_URL = spamd_server.url
    return spamd_server
