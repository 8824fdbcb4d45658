"""
A fast SMTP sink on loopback for the send benchmark and the reliability tests.

It speaks just enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) to
accept what the pipeline sends, as fast as asyncio allows: the body is read
with one `readuntil(b"\\r\\n.\\r\\n")`. Several processes share the port with
SO_REUSEPORT so the sink is not the bottleneck.

    python bench/sink.py --port 2525 --processes 2 --state DIR [--record] [--store 5]
        [--bounce REGEX] [--tempfail-flag PATH]

--state DIR     each process writes DIR/<pid>.stats ("count last_accept_epoch") a few
                times a second and at exit; with --record also DIR/<pid>.rcpt, one
                accepted recipient per line (duplicates and losses are counted from it)
--store N       keep the first N accepted messages as DIR/<pid>-<i>.eml
--bounce REGEX  answer "550 5.1.1" to RCPT for recipients matching REGEX
--tempfail-flag PATH  while PATH exists, answer with its content (e.g. "451 4.3.0
                Try again later"); a reply starting with 421 is given at MAIL and the
                connection is closed, others at the end of DATA
"""

import argparse
import asyncio
import os
import re
import signal
import socket
import sys
import time
from pathlib import Path


class Sink:
    def __init__(self, args):
        self.state = Path(args.state)
        self.count = 0
        self.last = 0.0
        self.stored = 0
        self.store = args.store
        self.bounce = re.compile(args.bounce, re.I) if args.bounce else None
        self.flag = Path(args.tempfail_flag) if args.tempfail_flag else None
        self.record = open(self.state / f"{os.getpid()}.rcpt", "a", buffering=1) if args.record else None
        self._flag_value, self._flag_checked = None, 0.0

    def tempfail(self):
        """The flag file's reply, re-read at most every 50 ms."""
        if self.flag is None:
            return None
        now = time.monotonic()
        if now - self._flag_checked > 0.05:
            self._flag_checked = now
            try:
                self._flag_value = self.flag.read_text().strip() or None
            except FileNotFoundError:
                self._flag_value = None
        return self._flag_value

    async def session(self, reader, writer):
        # Replies to pipelined commands must leave at once, not wait for a delayed ACK.
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        write = writer.write
        write(b"220 sink ESMTP\r\n")
        rcpts = []
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    write(b"250-sink\r\n250-8BITMIME\r\n250 PIPELINING\r\n" if verb == b"EHLO" else b"250 sink\r\n")
                elif verb == b"MAIL":
                    reply = self.tempfail()
                    if reply and reply.startswith("421"):
                        write(reply.encode() + b"\r\n")
                        await writer.drain()
                        break
                    rcpts = []
                    write(b"250 2.1.0 Ok\r\n")
                elif verb == b"RCPT":
                    address = line[8:].strip().strip(b"<>").decode("utf-8", "replace")
                    if self.bounce and self.bounce.search(address):
                        write(b"550 5.1.1 <" + address.encode() + b">: Recipient address rejected\r\n")
                    else:
                        rcpts.append(address)
                        write(b"250 2.1.5 Ok\r\n")
                elif verb == b"DATA" and not rcpts:
                    write(b"554 5.5.1 No valid recipients\r\n")
                elif verb == b"DATA":
                    write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    body = await reader.readuntil(b"\r\n.\r\n")
                    write(self.accept(rcpts, body))
                    rcpts = []
                elif verb == b"QUIT":
                    write(b"221 2.0.0 Bye\r\n")
                    break
                else:  # RSET, NOOP and anything else
                    rcpts = [] if verb == b"RSET" else rcpts
                    write(b"250 2.0.0 Ok\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    def accept(self, rcpts, body):
        reply = self.tempfail()
        if reply and not reply.startswith("421"):
            return reply.encode() + b"\r\n"
        self.count += 1
        self.last = time.time()
        if self.record:
            self.record.write("\n".join(rcpts) + "\n")
        if self.stored < self.store:
            self.stored += 1
            (self.state / f"{os.getpid()}-{self.stored}.eml").write_bytes(body[:-3].replace(b"\r\n..", b"\r\n."))
        return b"250 2.0.0 Ok: queued\r\n"

    def write_stats(self):
        path = self.state / f"{os.getpid()}.stats"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{self.count} {self.last}\n")
        os.replace(tmp, path)

    async def report(self):
        while True:
            self.write_stats()
            await asyncio.sleep(0.1)


async def serve(args, sock):
    sink = Sink(args)
    server = await asyncio.start_server(sink.session, sock=sock, limit=16 * 1024 * 1024)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reporter = asyncio.create_task(sink.report())
    async with server:
        await stop.wait()
    reporter.cancel()
    sink.write_stats()


def listening_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--state", required=True)
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--store", type=int, default=0)
    parser.add_argument("--bounce", default="")
    parser.add_argument("--tempfail-flag", default="")
    args = parser.parse_args(argv)
    Path(args.state).mkdir(parents=True, exist_ok=True)
    children = []
    for _ in range(args.processes - 1):
        pid = os.fork()
        if pid == 0:
            asyncio.run(serve(args, listening_socket(args.port)))
            os._exit(0)
        children.append(pid)
    asyncio.run(serve(args, listening_socket(args.port)))
    for child in children:
        try:
            os.kill(child, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(child, 0)


def read_state(state, *, recipients=True):
    """(accepted count, last accept epoch, {recipient: times received}) over all sink processes;
    with recipients=False the (growing) record is not read and the dict is empty."""
    state = Path(state)
    count, last, seen = 0, 0.0, {}
    for stats in state.glob("*.stats"):
        parts = stats.read_text().split()
        if len(parts) == 2:
            count += int(parts[0])
            last = max(last, float(parts[1]))
    for record in state.glob("*.rcpt") if recipients else ():
        for line in record.read_text().splitlines():
            if line:
                seen[line] = seen.get(line, 0) + 1
    return count, last, seen


if __name__ == "__main__":
    sys.exit(main())
