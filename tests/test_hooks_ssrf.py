"""
REST hook targets cannot be turned against us: the SSRF rules of
campaigns.hooks_client, checked against a real HTTP receiver on loopback.
"""

import ipaddress
import json
import socket

import pytest

from campaigns import hooks_client
from campaigns.hooks_client import UnsafeTarget, check_target, check_url, post
from tests.hook_receiver import HookReceiver, receiver  # noqa: F401 (receiver: a fixture)


@pytest.fixture
def no_loopback(settings):
    settings.HOOKS_ALLOW_LOOPBACK = False


def _refused(url):
    with pytest.raises(UnsafeTarget) as caught:
        check_target(url)
    return str(caught.value)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8000/hook",
    "http://localhost:8000/hook",  # a name resolving to a private (loopback) address
    "http://[::1]/hook",
    "http://0.0.0.0/hook",
])
def test_loopback_is_refused_in_production(no_loopback, url):
    assert "hooks may not call" in _refused(url)


@pytest.mark.parametrize("url", [
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
])
def test_link_local_and_the_metadata_service_are_refused(url):
    assert "link-local" in _refused(url)


@pytest.mark.parametrize("url", [
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://100.64.0.1/", "http://[fc00::1]/",
])
def test_private_addresses_are_refused(url):
    assert "private address" in _refused(url)


@pytest.mark.parametrize("url", [
    "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/", "http://[2002:a00:1::]/",  # 6to4 carrying 10.0.0.1
])
def test_ipv4_addresses_inside_ipv6_are_judged_by_the_ipv4_address(no_loopback, url):
    assert "hooks may not call" in _refused(url)


@pytest.mark.parametrize("host", ["2130706433", "0x7f000001", "0177.0.0.1", "127.1", "0x7f.0.0.1", "017700000001"])
def test_decimal_hex_and_octal_ip_forms_are_refused(host):
    assert _refused(f"http://{host}/hook") == (
        "Write the host as a name or a plain dotted IPv4 address (like 203.0.113.7).")


def test_decimal_form_is_refused_even_when_loopback_is_allowed(receiver):
    # 2130706433 is 127.0.0.1; the receiver listens there, and still hears nothing.
    answer = post(f"http://2130706433:{receiver.port}/hook", b"{}", {})

    assert answer.status is None and answer.error.startswith("Refused target:")
    assert receiver.requests == []


@pytest.mark.parametrize("url, reason", [
    ("ftp://example.org/x", "The target must be an http:// or https:// URL."),
    ("file:///etc/passwd", "The target must be an http:// or https:// URL."),
    ("http://user:pw@example.org/", "Put no user name or password in the URL; the signature authenticates deliveries."),
    ("http://example.org/a\r\nX: y", "Enter an http:// or https:// URL without spaces, at most 2000 characters."),
    ("http:///nohost", "The URL has no host name."),
    ("http://example.org:99999/", "The URL's port is not a number between 1 and 65535."),
])
def test_malformed_urls_are_refused(url, reason):
    with pytest.raises(UnsafeTarget) as caught:
        check_url(url)
    assert str(caught.value) == reason


def test_a_name_with_any_private_address_is_refused(monkeypatch):
    # given a resolver answering one public and one private address (a rebinding setup)
    def answers(host, port, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]

    monkeypatch.setattr(hooks_client.socket, "getaddrinfo", answers)

    assert _refused("https://shop.example/hook") == (
        "shop.example resolves to 10.1.2.3, which hooks may not call: it is a private address.")


def test_public_addresses_are_allowed():
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "8.8.8.8"):
        assert hooks_client.address_problem(ipaddress.ip_address(address)) == ""


def test_the_connection_is_pinned_to_the_checked_address_and_sends_the_name_as_host(receiver):
    # when a name is posted to: localhost resolves to 127.0.0.1 (loopback allowed in tests)
    target = check_target(receiver.url("/hook?x=1", host="localhost"))
    answer = post(receiver.url("/hook?x=1", host="localhost"), b'{"a": 1}', {"X-Test": "yes"})

    # then
    assert (target.address, target.host, target.path) == ("127.0.0.1", "localhost", "/hook?x=1")
    assert answer.status == 200 and answer.body == "ok"
    [request] = receiver.requests
    assert request.headers["Host"] == f"localhost:{receiver.port}"
    assert (request.path, request.body, request.headers["X-Test"]) == ("/hook?x=1", b'{"a": 1}', "yes")
    assert request.headers["Content-Type"] == "application/json"


def test_redirects_are_not_followed(receiver):
    other = HookReceiver().start()
    try:
        receiver.statuses = [302]
        receiver.headers = {"Location": other.url("/elsewhere")}

        answer = post(receiver.url(), b"{}", {})

        assert answer.status == 302
        assert len(receiver.requests) == 1
        assert other.requests == []
    finally:
        other.stop()


def test_a_closed_port_is_an_answer_without_status_not_an_exception(receiver):
    port = receiver.port
    receiver.stop()

    answer = post(f"http://127.0.0.1:{port}/hook", b"{}", {})

    assert answer.status is None
    assert "ConnectionRefusedError" in answer.error


def test_signature_verifies_with_the_secret_and_fails_otherwise():
    body = json.dumps({"event": "subscriber.created"}).encode()
    header = hooks_client.signature_header("s3cret", body, 1_800_000_000)

    assert hooks_client.verify("s3cret", body, header, now=1_800_000_010)
    assert not hooks_client.verify("other", body, header, now=1_800_000_010)
    assert not hooks_client.verify("s3cret", body + b" ", header, now=1_800_000_010)
    assert not hooks_client.verify("s3cret", body, header, now=1_800_001_000)  # too old: a replay
    assert header.startswith("t=1800000000,v1=") and len(header.split("v1=")[1]) == 64
