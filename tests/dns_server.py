"""
A real authoritative DNS server on loopback (UDP and TCP) serving records set at run time.

    from tests.dns_server import dns_server  # noqa: F401

    def test_it_finds_the_dkim_key(dns_server):
        dns_server.set("ar2026._domainkey.example.com", "TXT", ["v=DKIM1; k=rsa; p=MIIB…"])

Values are in zone-file presentation form ("10 mx.example.com" for MX), except
TXT, where each value is the whole record text: the server splits it into
character-strings of at most 255 bytes, as a DNS host does (a tuple of strings
is served as those exact strings). Unknown names answer NXDOMAIN; a known name
without the asked type answers NOERROR with no records. A CNAME is followed
inside the served records. `servfail(name)` makes a name answer SERVFAIL and
`drop(name)` makes it never answer (a timeout). `queries` lists every
(name, type) asked, lower-case, without the final dot.

The server starts once per test session; the `dns_server` fixture clears its
records and points settings.DNS_NAMESERVERS at it for each test.
"""

import socketserver
import struct
import threading

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.ANY.TXT import TXT

TTL = 60


def _key(name):
    return name.strip().rstrip(".").lower()


class Zone:
    """The records served, guarded by a lock (the server threads read while a test writes)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.records = {}  # (name, rdatatype) -> [rdata]
        self.failing = {}  # name -> "servfail" | "drop"
        self.queries = []

    def set(self, name, rtype, values):
        rdtype = dns.rdatatype.from_text(rtype)
        rdatas = [_rdata(rdtype, value) for value in values]
        with self.lock:
            self.records[(_key(name), rdtype)] = rdatas

    def clear(self):
        with self.lock:
            self.records.clear()
            self.failing.clear()
            self.queries.clear()

    def servfail(self, name):
        with self.lock:
            self.failing[_key(name)] = "servfail"

    def drop(self, name):
        with self.lock:
            self.failing[_key(name)] = "drop"

    def answer(self, request):
        """The response message for `request`, or None to stay silent."""
        response = dns.message.make_response(request)
        response.flags |= dns.flags.AA
        if not request.question:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = request.question[0]
        name = _key(question.name.to_text())
        with self.lock:
            self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
            failing = self.failing.get(name)
            if failing == "drop":
                return None
            if failing == "servfail":
                response.set_rcode(dns.rcode.SERVFAIL)
                return response
            self._fill(response, question.name, question.rdtype)
        return response

    def _fill(self, response, qname, rdtype, depth=0):
        name = _key(qname.to_text())
        known = any(key[0] == name for key in self.records)
        if not known:
            if depth == 0:
                response.set_rcode(dns.rcode.NXDOMAIN)
            return
        cname = self.records.get((name, dns.rdatatype.CNAME))
        if cname and rdtype != dns.rdatatype.CNAME and depth < 8:
            response.answer.append(_rrset(qname, dns.rdatatype.CNAME, cname))
            self._fill(response, cname[0].target, rdtype, depth + 1)
            return
        rdatas = self.records.get((name, rdtype))
        if rdatas:
            response.answer.append(_rrset(qname, rdtype, rdatas))


def _rdata(rdtype, value):
    if rdtype == dns.rdatatype.TXT:
        if isinstance(value, (tuple, list)):
            strings = [s.encode() if isinstance(s, str) else s for s in value]
        else:
            data = value.encode() if isinstance(value, str) else value
            strings = [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]
        return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, value, origin=dns.name.root, relativize=False)


def _rrset(qname, rdtype, rdatas):
    rrset = dns.rrset.RRset(qname, dns.rdataclass.IN, rdtype)
    for rdata in rdatas:
        rrset.add(rdata, TTL)
    return rrset


def _wire(response, request, limit):
    try:
        return response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        # Too big for UDP: answer with the TC bit so the client asks again over TCP.
        truncated = dns.message.make_response(request)
        truncated.flags |= dns.flags.TC | dns.flags.AA
        return truncated.to_wire()


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        try:
            request = dns.message.from_wire(data)
        except dns.exception.DNSException:
            return
        response = self.server.zone.answer(request)
        if response is not None:
            limit = max(request.payload, 512) if request.edns >= 0 else 512
            sock.sendto(_wire(response, request, limit), self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            head = _read(self.request, 2)
            if not head:
                return
            data = _read(self.request, struct.unpack("!H", head)[0])
            try:
                request = dns.message.from_wire(data)
            except dns.exception.DNSException:
                return
            response = self.server.zone.answer(request)
            if response is None:
                return
            wire = response.to_wire(max_size=65535)
            self.request.sendall(struct.pack("!H", len(wire)) + wire)


def _read(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


class _UDP(socketserver.ThreadingMixIn, socketserver.UDPServer):
    daemon_threads = True


class _TCP(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True


class DNSServer:
    """UDP and TCP listeners on the same free loopback port, sharing one Zone."""

    host = "127.0.0.1"

    def __init__(self):
        self.zone = Zone()
        for _ in range(20):
            udp = _UDP((self.host, 0), _UDPHandler)
            try:
                tcp = _TCP((self.host, udp.server_address[1]), _TCPHandler)
            except OSError:  # the port is taken for TCP: try another
                udp.server_close()
                continue
            break
        else:
            raise RuntimeError("No free loopback port for both UDP and TCP.")
        self.port = udp.server_address[1]
        self.servers = (udp, tcp)
        for server in self.servers:
            server.zone = self.zone

    @property
    def address(self):
        """The DNS_NAMESERVERS entry for this server."""
        return f"{self.host}:{self.port}"

    def start(self):
        for server in self.servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def set(self, name, rtype, values):
        self.zone.set(name, rtype, values)

    def clear(self):
        self.zone.clear()

    def servfail(self, name):
        self.zone.servfail(name)

    def drop(self, name):
        self.zone.drop(name)

    @property
    def queries(self):
        with self.zone.lock:
            return list(self.zone.queries)


_server = None
_server_lock = threading.Lock()


def shared_server():
    """The session's server, started on first use (a plain function, so importing `dns_server` is enough)."""
    global _server
    with _server_lock:
        if _server is None:
            _server = DNSServer().start()
        return _server


@pytest.fixture
def dns_server(settings):
    """The loopback DNS server, empty, with settings.DNS_NAMESERVERS pointing at it."""
    server = shared_server()
    server.clear()
    settings.DNS_NAMESERVERS = [server.address]
    yield server
    server.clear()


def lookup_txt(name, timeout=5):
    """A dkimpy `dnsfunc` (dkim.verify(raw, dnsfunc=lookup_txt)) reading TXT through autoresponder.dns."""
    from autoresponder import dns as ardns

    records = ardns.txt(name.decode() if isinstance(name, bytes) else name)
    return records[0].encode() if records else None
