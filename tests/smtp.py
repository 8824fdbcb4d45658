"""A real SMTP server on loopback (aiosmtpd) that records what it receives.

Tests can script its answers: `server.rcpt_replies["x@example.com"] = "550 5.1.1 No such user"`
or `server.data_reply = "451 4.3.0 Try again later"` (None: accept).
"""

import email
import email.policy
import socket
import threading
from dataclasses import dataclass

from aiosmtpd.controller import Controller


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list
    raw: bytes

    @property
    def message(self):
        return email.message_from_bytes(self.raw, policy=email.policy.default)


class RecordingHandler:
    def __init__(self):
        self.messages = []
        self.rcpt_replies = {}
        self.data_reply = None
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        reply = self.rcpt_replies.get(address.lower())
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.data_reply:
            return self.data_reply
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Message accepted for delivery"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SMTPServer:
    def __init__(self):
        self.handler = RecordingHandler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self.controller = Controller(self.handler, hostname=self.host, port=self.port)

    def start(self):
        self.controller.start()
        return self

    def stop(self):
        self.controller.stop()

    @property
    def url(self):
        return f"smtp://{self.host}:{self.port}"

    @property
    def messages(self):
        return list(self.handler.messages)

    @property
    def rcpt_replies(self):
        return self.handler.rcpt_replies

    def set_data_reply(self, reply):
        self.handler.data_reply = reply

    def clear(self):
        self.handler.messages.clear()
