"""
A real HTTP receiver for REST hook tests: http.server on a free loopback port,
in a thread. It records every request (path, headers, body) and answers with
the statuses it is told, in order (the last one repeats).
"""

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes


class HookReceiver:
    def __init__(self, host="127.0.0.1"):
        self.requests = []
        self.statuses = [200]
        self.headers = {}  # extra response headers, e.g. {"Location": …}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                    status = receiver.statuses[min(len(receiver.requests), len(receiver.statuses)) - 1]
                self.send_response(status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.host, self.port = self.server.server_address[:2]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path="/hook", host=None):
        return f"http://{host or self.host}:{self.port}{path}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        if self.thread.is_alive():
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def receiver():
    """A HookReceiver on a free loopback port for one test (import it: `from tests.hook_receiver import receiver`)."""
    server = HookReceiver().start()
    yield server
    server.stop()
