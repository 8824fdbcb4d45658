"""Transports, reply classification, encrypted credentials, the EMAIL_URL backend, rate limits."""

import json
import multiprocessing
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db import connection

from campaigns import backends, defaults, ratelimit
from campaigns.backends import BOUNCE, FAILED, POLICY, RETRY, SENT, Envelope, classify
from campaigns.models import Backend
from tests.sending_factories import backend_for
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("code, text, stage, kind", [
    (250, "2.0.0 OK", "data", SENT),
    (421, "4.7.0 Too many connections", "mail", RETRY),
    (451, "4.3.0 Try later", "data", RETRY),
    (550, "5.1.1 No such user", "rcpt", BOUNCE),
    (550, "550 5.1.1 No such user", "data", BOUNCE),
    (554, "5.7.1 Rejected by policy", "data", POLICY),
    (550, "5.7.26 DMARC failure", "data", POLICY),
    (552, "5.2.2 Mailbox full", "data", FAILED),
    (550, "Mailbox unavailable", "rcpt", BOUNCE),
    (550, "Content rejected", "data", FAILED),
    (554, "Transaction failed", "data", FAILED),
])
def test_classify_maps_smtp_replies(code, text, stage, kind):
    assert classify(code, text, stage=stage) == kind


# --- Encrypted credentials ---------------------------------------------------------------


@pytest.mark.django_db
def test_credentials_are_encrypted_at_rest_and_read_back():
    backend = Backend.objects.create(name="ESP", kind=Backend.SENDGRID, api_key="SG.secret-key", password="smtp-password-1")
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key, password FROM campaigns_backend WHERE id = %s", [backend.pk])
        api_key, password = cursor.fetchone()
    assert api_key.startswith("fernet:") and "secret-key" not in api_key
    assert password.startswith("fernet:") and "smtp-password-1" not in password  # base64 may hold short strings by chance
    assert Backend.objects.get(pk=backend.pk).api_key == "SG.secret-key"


@pytest.mark.django_db
def test_credentials_read_empty_when_the_encryption_key_changed(settings):
    backend = Backend.objects.create(name="ESP", kind=Backend.SENDGRID, api_key="SG.secret-key")
    settings.ENCRYPTION_KEY = "another key entirely, 0123456789abcdef"
    assert Backend.objects.get(pk=backend.pk).api_key == ""


# --- The EMAIL_URL backend ---------------------------------------------------------------------


def test_fields_from_url_reads_smtp_with_starttls_and_credentials():
    fields = defaults.fields_from_url("smtp+tls://mailer%40example.com:p%40ss@mail.example.com:2525")
    assert fields == {"kind": "smtp", "host": "mail.example.com", "port": 2525, "security": "starttls",
                      "username": "mailer@example.com", "password": "p@ss"}


@pytest.mark.django_db
def test_env_backend_is_created_once_and_follows_email_url(settings):
    first = defaults.ensure_env_backend()
    again = defaults.ensure_env_backend()
    assert first.pk == again.pk and first.kind == "outbox" and first.priority == 1000
    Backend.objects.filter(pk=first.pk).update(rate_per_second=7)
    settings.EMAIL_URL = "smtps://relay.example.com"
    changed = defaults.ensure_env_backend()
    assert (changed.pk, changed.kind, changed.host, changed.security) == (first.pk, "smtp", "relay.example.com", "tls")
    assert changed.rate_per_second == 7  # kept: set by the operator
    assert Backend.objects.filter(env_key="EMAIL_URL").count() == 1


# --- SMTP transport ------------------------------------------------------------------------------


def envelope(to="bob@example.org", raw=b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"):
    return Envelope(ledger_id=1, from_name="A", from_email="a@example.com", to_email=to, subject="hi",
                    html="", text="body", message_id="<1@x>", raw=raw)


@pytest.mark.django_db
def test_smtp_transport_sends_several_messages_over_one_connection(smtp_server):
    backend = backend_for(smtp_server)
    with backends.SMTPTransport(backend) as transport:
        conn = transport.conn
        outcomes = [transport.send(envelope(to=f"r{i}@example.org")) for i in range(3)]
        assert transport.conn is conn
    assert [o.kind for o in outcomes] == [SENT] * 3
    assert outcomes[0].response == "250 2.0.0 Message accepted for delivery"
    # dot-stuffing was applied on the wire and undone by the server
    assert smtp_server.messages[0].raw.replace(b"\r\n", b"\n").endswith(b".leading dot\nbody\n")


@pytest.mark.django_db
def test_smtp_transport_refused_recipient_does_not_break_the_session(smtp_server):
    backend = backend_for(smtp_server)
    smtp_server.rcpt_replies["gone@example.org"] = "550 5.1.1 No such user"
    with backends.SMTPTransport(backend) as transport:
        bounced = transport.send(envelope(to="gone@example.org"))
        sent = transport.send(envelope(to="here@example.org"))
    assert (bounced.kind, bounced.response) == (BOUNCE, "550 5.1.1 No such user")
    assert sent.kind == SENT
    assert [m.rcpt_tos for m in smtp_server.messages] == [["here@example.org"]]


@pytest.mark.django_db
def test_smtp_transport_cannot_connect_raises_unreachable():
    backend = Backend(name="Nowhere", kind=Backend.SMTP, host="127.0.0.1", port=free_port(), security=Backend.NONE)
    with pytest.raises(backends.Unreachable):
        with backends.SMTPTransport(backend, timeout=2):
            pass


@pytest.mark.django_db
def test_check_connection_reports_success_and_failure(smtp_server):
    ok, text = backends.check_connection(backend_for(smtp_server))
    assert ok is True and text == f"Connected to 127.0.0.1:{smtp_server.port}."
    dead = Backend(name="Nowhere", kind=Backend.SMTP, host="127.0.0.1", port=free_port(), security=Backend.NONE)
    ok, text = backends.check_connection(dead)
    assert ok is False and text.startswith(f"Could not connect: 127.0.0.1:{dead.port}:")


# --- ESPs through anymail, against a local HTTP server speaking Postmark's API ------------------------


class FakePostmark(BaseHTTPRequestHandler):
    replies = []  # (status, json) to answer, in order
    received = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, dict(self.headers), body))
        self._answer()

    def do_GET(self):
        self.received.append((self.path, dict(self.headers), None))
        self._answer()

    def _answer(self):
        status, payload = self.replies.pop(0)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def postmark():
    FakePostmark.replies, FakePostmark.received = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakePostmark)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server, FakePostmark
    server.shutdown()


def postmark_backend(server):
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    return Backend(name="Postmark", kind=Backend.POSTMARK, api_key="pm-token",
                   esp_options={"api_url": url, "check_url": url + "server"})


def esp_envelope():
    return Envelope(ledger_id=42, from_name="Alice's Shop", from_email="news@alice.example", to_email="bob@example.org",
                    subject="Hello", html="<p>Hi</p>", text="Hi", message_id="<42.x@alice.example>",
                    headers={"List-Unsubscribe": "<https://x/u/t>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"},
                    tags=["broadcast-7"])


def test_anymail_transport_sends_with_our_headers_and_ledger_metadata(postmark):
    server, handler = postmark
    handler.replies = [(200, {"To": "bob@example.org", "MessageID": "pm-123", "ErrorCode": 0, "Message": "OK"})]
    with backends.AnymailTransport(postmark_backend(server)) as transport:
        outcome = transport.send(esp_envelope())
    assert (outcome.kind, outcome.provider_id) == (SENT, "pm-123")
    path, headers, body = handler.received[0]
    assert path == "/email" and headers["X-Postmark-Server-Token"] == "pm-token"
    assert body["Metadata"] == {"ledger_id": "42"}
    sent_headers = {h["Name"]: h["Value"] for h in body["Headers"]}
    assert sent_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert sent_headers["Message-ID"] == "<42.x@alice.example>"
    assert body["Tag"] == "broadcast-7"


@pytest.mark.parametrize("status, payload, kind", [
    (422, {"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive.\n"
           "Found inactive addresses: bob@example.org.\nInactive recipients are ones that have generated a hard "
           "bounce or a spam complaint."}, BOUNCE),
    (500, {"ErrorCode": 500, "Message": "Internal error"}, RETRY),
    (429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, RETRY),
    (401, {"ErrorCode": 10, "Message": "Bad or missing server token"}, RETRY),
])
def test_anymail_transport_maps_esp_errors(postmark, status, payload, kind):
    server, handler = postmark
    handler.replies = [(status, payload)]
    with backends.AnymailTransport(postmark_backend(server)) as transport:
        outcome = transport.send(esp_envelope())
    assert outcome.kind == kind
    assert outcome.network is (status == 401)


def test_anymail_transport_network_error_is_a_retry():
    backend = Backend(name="Postmark", kind=Backend.POSTMARK, api_key="t",
                      esp_options={"api_url": f"http://127.0.0.1:{free_port()}/"})
    with backends.AnymailTransport(backend, timeout=2) as transport:
        outcome = transport.send(esp_envelope())
    assert (outcome.kind, outcome.network) == (RETRY, True)


def test_check_connection_for_an_esp_reports_a_refused_key(postmark):
    server, handler = postmark
    handler.replies = [(401, {"ErrorCode": 10, "Message": "Bad token"}), (200, {"Name": "Server"})]
    ok, text = backends.check_connection(postmark_backend(server))
    assert ok is False and text.startswith("Postmark refused the API key (HTTP 401)")
    ok, text = backends.check_connection(postmark_backend(server))
    assert (ok, text) == (True, "Postmark accepted the API key.")
    assert handler.received[0][1]["X-Postmark-Server-Token"] == "pm-token"


# --- Rate limits ---------------------------------------------------------------------------------------------


@pytest.fixture(params=["redis", "file"])
def limiter(request, settings, tmp_path):
    """Each rate-limit test runs on Redis and on the single-machine file lock."""
    settings.DATA_DIR = tmp_path
    if request.param == "file":
        settings.REDIS_URL = ""
    return request.param


def limits(name, **kw):
    return ratelimit.Limits(key=f"{name}-{time.time_ns()}", rate=kw.get("rate", 0), window_limit=kw.get("window", 0),
                            window_seconds=kw.get("seconds", 60))


def test_token_bucket_grants_one_second_then_waits(limiter):
    l = limits("bucket", rate=5)
    assert ratelimit.take(l, 10)[0] == 5
    granted, wait = ratelimit.take(l, 10)
    assert granted == 0 and 0 < wait <= 0.2
    time.sleep(0.45)
    assert ratelimit.take(l, 10)[0] == 2


def test_window_quota_stops_at_the_limit_with_the_wait_to_the_oldest_slot(limiter):
    l = limits("window", window=3, seconds=600)
    assert [ratelimit.take(l, 2)[0], ratelimit.take(l, 2)[0]] == [2, 1]
    granted, wait = ratelimit.take(l, 1)
    assert granted == 0 and 590 < wait <= 620


def test_unlimited_backend_is_not_counted(limiter):
    assert ratelimit.take(limits("none"), 1000) == (1000, 0.0)


def _hammer(redis_url, data_dir, key, start, end, queue):
    import django
    from django.conf import settings

    django.setup()
    settings.REDIS_URL, settings.DATA_DIR = redis_url, data_dir
    l = ratelimit.Limits(key=key, rate=20, window_limit=0, window_seconds=60)
    granted = 0
    time.sleep(max(0, start - time.time()))
    while time.time() < end:
        got, wait = ratelimit.take(l, 1)
        granted += got
        if not got:
            time.sleep(min(wait, 0.05))
    queue.put(granted)


@pytest.mark.slow
@pytest.mark.parametrize("backend_store", ["redis", "file"])
def test_rate_holds_across_processes(settings, tmp_path, backend_store):
    # given: three processes taking as fast as they can from a 20/s limit during the same 1.5 s
    redis_url = settings.REDIS_URL if backend_store == "redis" else ""
    key = f"procs-{time.time_ns()}"
    start = time.time() + 1.5  # after every process has started
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    procs = [context.Process(target=_hammer, args=(redis_url, tmp_path, key, start, start + 1.5, queue))
             for _ in range(3)]
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=30) for _ in procs)
    for p in procs:
        p.join()
    # then: at most the burst (20) plus 1.5 s at 20/s, whatever the number of processes
    assert 20 <= total <= 51


# --- Pipelining (RFC 2920) against bench/sink.py, which offers it ------------------------------------------


class PipeliningSink:
    """bench/sink.py in its own process: it offers PIPELINING and records what it accepts."""

    def __init__(self, state):
        from bench.sink import read_state

        self.state, self.read_state = state, read_state
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "bench/sink.py", "--port", str(self.port),
                                         "--state", str(state), "--record", "--bounce", "^gone"], cwd=ROOT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)

    @property
    def backend(self):
        return Backend(name="Sink", kind=Backend.SMTP, host="127.0.0.1", port=self.port, security=Backend.NONE)

    def received(self):
        time.sleep(0.3)  # the sink writes its record a few times a second
        return self.read_state(self.state)[2]


@pytest.fixture
def pipelining_sink(tmp_path):
    sink = PipeliningSink(tmp_path)
    yield sink
    sink.process.terminate()
    sink.process.wait()


def test_chained_messages_each_get_their_own_outcome(pipelining_sink):
    recipients = ["a@example.org", "gone@example.org", "b@example.org", "c@example.org"]
    outcomes = []
    with backends.SMTPTransport(pipelining_sink.backend) as transport:
        assert transport.pipelining is True
        for i, to in enumerate(recipients):
            following = recipients[i + 1] if i + 1 < len(recipients) else None
            transport.submit(envelope(to=to), chain=("a@example.com", following) if following else None)
            outcomes.append(transport.collect())
    assert [o.kind for o in outcomes] == [SENT, BOUNCE, SENT, SENT]
    assert outcomes[1].response == "550 5.1.1 <gone@example.org>: Recipient address rejected"
    assert pipelining_sink.received() == {"a@example.org": 1, "b@example.org": 1, "c@example.org": 1}


def test_abandoning_a_chained_transaction_sends_nothing_for_it(pipelining_sink):
    with backends.SMTPTransport(pipelining_sink.backend) as transport:
        transport.submit(envelope(to="a@example.org"), chain=("a@example.com", "b@example.org"))
        assert transport.collect().kind == SENT
        transport.abandon()
        assert transport.conn is None
        transport.submit(envelope(to="c@example.org"))  # reconnects
        assert transport.collect().kind == SENT
    assert pipelining_sink.received() == {"a@example.org": 1, "c@example.org": 1}
