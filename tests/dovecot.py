"""
A real IMAP and POP3 server on loopback for the bounce-mailbox tests: Debian's
Dovecot (installed by scripts/services.sh), run with its own configuration,
mail and sockets in a temporary directory, on free ports, as one foreground
process that the fixture stops at the end.
"""

import imaplib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.smtp import free_port

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "bounce-secret"

CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%u
first_valid_uid = {uid}
last_valid_uid = {uid}
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service pop3-login {{
  chroot =
}}
"""


class Dovecot:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="ar-dovecot-"))
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.process = None

    def _identity(self):
        """Root runs the server as Debian's `dovecot` user; anyone else as themselves."""
        if os.geteuid() == 0:
            account = pwd.getpwnam("dovecot")
        else:
            account = pwd.getpwuid(os.geteuid())
        return account

    def start(self):
        if not Path(DOVECOT).exists():
            pytest.fail("Dovecot is not installed: run `make services` (it installs dovecot-imapd and dovecot-pop3d).")
        account = self._identity()
        self.root.chmod(0o755)  # the server's own user must reach its password file
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        config = CONFIG.format(
            root=self.root, uid=account.pw_uid, gid=account.pw_gid, user=account.pw_name,
            group=account.pw_name if os.geteuid() else "dovecot", imap_port=self.imap_port, pop3_port=self.pop3_port,
        )
        (self.root / "dovecot.conf").write_text(config)
        if os.geteuid() == 0:
            shutil.chown(self.root / "mail", account.pw_uid, account.pw_gid)
        self.process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait()
        return self

    def _wait(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.root / "dovecot.log").read_text() if (self.root / "dovecot.log").exists() else ""
                pytest.fail(f"Dovecot stopped: {self.process.stderr.read().decode()} {log}")
            try:
                with socket.create_connection(("127.0.0.1", self.imap_port), timeout=1):
                    with socket.create_connection(("127.0.0.1", self.pop3_port), timeout=1):
                        return
            except OSError:
                time.sleep(0.1)
        pytest.fail("Dovecot did not answer within 15 seconds.")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    # -- what the tests use --

    def url(self, scheme="imap", folder="INBOX", query=""):
        port = self.imap_port if scheme.startswith("imap") else self.pop3_port
        path = f"/{folder}" if scheme.startswith("imap") else ""
        return f"{scheme}://{USER}:{PASSWORD}@127.0.0.1:{port}{path}{'?' + query if query else ''}"

    def imap(self):
        conn = imaplib.IMAP4("127.0.0.1", self.imap_port, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def deliver(self, raw, folder="INBOX"):
        """Put a mail in the mailbox, as the MTA would (IMAP APPEND)."""
        conn = self.imap()
        try:
            conn.create(folder)
            status, data = conn.append(folder, None, None, raw)
            assert status == "OK", data
        finally:
            conn.logout()

    def contents(self, folder="INBOX"):
        """[(flags, raw)] of every mail in `folder`, without changing their flags."""
        conn = self.imap()
        try:
            status, _ = conn.select(folder, readonly=True)
            if status != "OK":
                return []
            _, data = conn.search(None, "ALL")
            found = []
            for number in (data[0] or b"").split():
                _, parts = conn.fetch(number, "(FLAGS BODY.PEEK[])")
                found.append((parts[0][0].decode(), parts[0][1]))
            return found
        finally:
            conn.logout()

    def clear(self):
        conn = self.imap()
        try:
            for folder in ("INBOX", "Processed"):
                status, data = conn.select(folder)
                if status == "OK" and int(data[0]) > 0:
                    conn.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                    conn.expunge()
        finally:
            conn.logout()


@pytest.fixture(scope="session")
def dovecot_server():
    server = Dovecot().start()
    yield server
    server.stop()


@pytest.fixture
def dovecot(dovecot_server):
    """The session's Dovecot with an empty mailbox."""
    dovecot_server.clear()
    yield dovecot_server
