"""SSRF guard: address classification and resolution, and the transport that applies them
(transport.Client and attempt(), against real servers on loopback)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from unittest.mock import ANY

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from apex.delivery.attempt import Outcome
from apex.delivery.ssrf import is_public_address, refusal_reason, resolve_public
from apex.errors import DestinationRefusedError, DestinationUnresolvedError
from tests.delivery_helpers import Sender, sending
from tests.integration.egress import ConnectProxy, PrivateCa, private_ca

BODY = b'{"id":"evt_1","type":"lead.created"}'
PRIVATE_RULE = "refused unless APEX_ALLOW_PRIVATE_DESTINATIONS=1"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("169.254.1.1", "link-local"),
        ("100.100.100.200", "cloud metadata"),
        ("100.64.0.1", "CGNAT"),
        ("100.127.255.255", "CGNAT"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("192.0.0.8", "IETF protocol assignments"),
        ("192.0.2.1", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.9", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("198.19.255.255", "benchmarking"),
        ("192.88.99.1", "6to4 relay"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "IPv4-mapped"),
        ("::ffff:8.8.8.8", "IPv4-mapped"),
        ("::127.0.0.1", "IPv4-compatible"),
        ("fd00:ec2::254", "cloud metadata"),
        ("fc00::1", "unique local"),
        ("fd12:3456:789a::1", "unique local"),
        ("fe80::1", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2002:7f00:1::", "6to4 of 127.0.0.1, loopback"),
        ("2002:a9fe:a9fe::1", "6to4 of 169.254.169.254, cloud metadata"),
        ("2002:c0a8:101::", "6to4 of 192.168.1.1, private"),
        ("64:ff9b::a00:1", "NAT64 of 10.0.0.1, private"),
        ("64:ff9b::7f00:1", "NAT64 of 127.0.0.1, loopback"),
        ("64:ff9b:1::808:808", "local-use NAT64"),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ("2001:2::1", "IETF protocol assignments"),
        ("100::1", "discard-only"),
        ("4000::1", "reserved"),
    ],
)
def test_refuses_non_public_address(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)

    assert not is_public_address(ip)
    assert reason in (refusal_reason(ip) or "")


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.255.255",
        "172.15.255.255",
        "172.32.0.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "2002:808:808::1",  # 6to4 of 8.8.8.8
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    ],
)
def test_accepts_public_address(address: str) -> None:
    ip = ipaddress.ip_address(address)

    assert is_public_address(ip)
    assert refusal_reason(ip) is None


@dataclass
class FakeResolver:
    """A lookup that answers from a table and counts calls; unknown names do not resolve."""

    table: dict[str, list[str]]
    calls: list[tuple[str, int]] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> Iterable[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


def test_localhost_is_refused() -> None:
    with pytest.raises(DestinationRefusedError, match="localhost resolves to .*loopback"):
        resolve_public("localhost", 443, allow_private=False)


def test_localhost_is_allowed_when_private_destinations_are() -> None:
    addresses = resolve_public("localhost", 443, allow_private=True)

    assert addresses
    assert all(ip.is_loopback for ip in addresses)


@pytest.mark.parametrize("literal", ["127.0.0.1", "::1", "[::1]", "169.254.169.254"])
def test_ip_literal_is_vetted_without_a_lookup(literal: str) -> None:
    lookup = FakeResolver({})

    with pytest.raises(DestinationRefusedError, match=r"^destination \S+ is .*, refused$"):
        resolve_public(literal, 443, allow_private=False, lookup=lookup)
    assert resolve_public(literal, 443, allow_private=True, lookup=lookup) == [
        ipaddress.ip_address(literal.strip("[]"))
    ]
    assert lookup.calls == []


@pytest.mark.parametrize("host", ["0177.0.0.1", "0x7f.0.0.1", "2130706433", "127.1"])
def test_obfuscated_loopback_is_judged_by_what_it_resolves_to(host: str) -> None:
    # Not IP literals to Python, so they go to getaddrinfo, which reads them numerically.
    with pytest.raises(DestinationRefusedError, match="resolves to a loopback address") as caught:
        resolve_public(host, 443, allow_private=False)
    assert "127.0.0.1" not in caught.value.detail


def test_refuses_when_any_answer_is_not_public() -> None:
    lookup = FakeResolver({"mixed.test": ["8.8.8.8", "10.0.0.1"]})

    with pytest.raises(DestinationRefusedError) as caught:
        resolve_public("mixed.test", 443, allow_private=False, lookup=lookup)

    assert caught.value.detail == (
        "destination mixed.test resolves to a private address, refused unless "
        "APEX_ALLOW_PRIVATE_DESTINATIONS=1"
    )  # the rule, never the address: a refusal must not map internal names
    assert caught.value.code == "destination_refused"


def test_a_refusal_of_a_name_never_tells_the_embedded_address() -> None:
    lookup = FakeResolver({"six.test": ["2002:a00:1::1"], "nat.test": ["64:ff9b::a00:1"]})

    for name in lookup.table:
        with pytest.raises(
            DestinationRefusedError, match="resolves to a private address"
        ) as caught:
            resolve_public(name, 443, allow_private=False, lookup=lookup)
        assert "10.0.0.1" not in caught.value.detail and "a00:1" not in caught.value.detail


def test_returns_public_answers_in_order_without_duplicates() -> None:
    lookup = FakeResolver({"public.test": ["8.8.4.4", "8.8.8.8", "8.8.4.4", "2606:4700::1"]})

    addresses = resolve_public("public.test", 443, allow_private=False, lookup=lookup)

    assert addresses == [ipaddress.ip_address(a) for a in ("8.8.4.4", "8.8.8.8", "2606:4700::1")]
    assert lookup.calls == [("public.test", 443)]


@pytest.mark.parametrize("allow_private", [False, True])
def test_unresolvable_host_is_reported_as_unresolved(allow_private: bool) -> None:
    lookup = FakeResolver({"empty.test": []})

    with pytest.raises(DestinationUnresolvedError, match="nowhere.test does not resolve"):
        resolve_public("nowhere.test", 443, allow_private, lookup=lookup)
    with pytest.raises(DestinationUnresolvedError, match="empty.test resolves to no address"):
        resolve_public("empty.test", 443, allow_private, lookup=lookup)


# --- the transport, against real servers on loopback ---------------------------------------


@dataclass(frozen=True)
class Reply:
    status: int | None
    body: str | None
    error: str | None

    @classmethod
    def of(cls, outcome: Outcome) -> Reply:
        return cls(outcome.status_code, outcome.response_body, outcome.error)


OK = Reply(200, "ok", None)


def deliver(sender: Sender, url: str, total_timeout: float = 15) -> Reply:
    """An attempt as a delivery makes it: the status and at most the first KiB of the body."""
    return Reply.of(sender.attempt(url, BODY, total_timeout=total_timeout))


@contextmanager
def running(server: HTTPServer) -> Iterator[HTTPServer]:
    server.start()
    try:
        yield server
    finally:
        server.clear()
        server.stop()


@pytest.fixture(scope="module")
def shared_server() -> Iterator[HTTPServer]:
    # threaded, so that concurrent requests are served; one per module: stopping takes 0.5 s
    with running(HTTPServer(host="127.0.0.1", port=0, threaded=True)) as started:
        yield started


@pytest.fixture
def server(shared_server: HTTPServer) -> Iterator[HTTPServer]:
    yield shared_server
    shared_server.clear()


@pytest.fixture
def receiver_test() -> FakeResolver:
    return FakeResolver({"receiver.test": ["127.0.0.1"]})


def test_posts_to_the_vetted_address_with_the_original_host_header(
    server: HTTPServer, receiver_test: FakeResolver
) -> None:
    server.expect_request("/hook", method="POST", data=BODY).respond_with_data("ok")

    with sending(lookup=receiver_test) as sender:
        reply = deliver(sender, f"http://receiver.test:{server.port}/hook")

    assert reply == OK
    (request, _), *_ = server.log
    assert request.headers["Host"] == f"receiver.test:{server.port}"
    assert request.headers["webhook-id"] == "evt_once"
    assert request.headers["content-type"] == "application/json"
    assert receiver_test.calls == [("receiver.test", server.port)]


@dataclass
class Rebinding:
    """DNS rebinding: the first answer is the receiver, every later one somewhere else."""

    first: str
    later: str
    calls: int = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return [self.first if self.calls == 1 else self.later]


def test_connects_to_the_answer_it_vetted_never_to_a_second_lookup(server: HTTPServer) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    rebinding = Rebinding(first="127.0.0.1", later="127.0.0.2")  # nothing listens there

    with sending(lookup=rebinding) as sender:
        reply = deliver(sender, f"http://rebind.test:{server.port}/hook")

    assert reply == OK
    assert rebinding.calls == 1  # the one answer vetted is the one connected to
    assert len(server.log) == 1


@pytest.mark.parametrize(
    ("literal", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "IPv4-mapped"),
        ("169.254.169.254", "cloud metadata"),
        ("[fd00:ec2::254]", "cloud metadata"),
        ("10.0.0.1", "private"),
    ],
)
def test_refuses_a_non_public_ip_literal_without_connecting(
    server: HTTPServer, literal: str, reason: str
) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    lookup = FakeResolver({})

    with sending(allow_private=False, lookup=lookup) as sender:
        reply = deliver(sender, f"http://{literal}:{server.port}/hook")

    address = literal.strip("[]")
    assert reply.error == f"destination_refused: destination {address} is {reason}, refused"
    assert lookup.calls == []
    assert server.log == []


@pytest.mark.parametrize("host", ["localhost", "0x7f.0.0.1"])
def test_refuses_a_name_the_system_resolves_to_loopback_without_connecting(
    server: HTTPServer, host: str
) -> None:
    server.expect_request("/hook").respond_with_data("ok")

    with sending(allow_private=False) as sender:  # the system resolver
        reply = deliver(sender, f"http://{host}:{server.port}/hook")

    assert reply.error == (
        f"destination_refused: destination {host} resolves to a loopback address, {PRIVATE_RULE}"
    )
    assert server.log == []


@pytest.mark.parametrize("host", ["127.1", "2130706433", "0177.0.0.1"])
def test_a_legacy_numeric_ipv4_form_is_never_connected_to(server: HTTPServer, host: str) -> None:
    # aiohttp reads these as IP addresses and refuses the non-canonical form outright.
    server.expect_request("/hook").respond_with_data("ok")

    for allow_private in (False, True):
        with sending(allow_private=allow_private) as sender:
            reply = deliver(sender, f"http://{host}:{server.port}/hook")
        assert reply == Reply(None, None, "request_error: InvalidUrlClientError")
    assert server.log == []


def test_refuses_a_name_resolving_to_a_private_address_without_connecting(
    server: HTTPServer, receiver_test: FakeResolver
) -> None:
    server.expect_request("/hook").respond_with_data("ok")

    with sending(allow_private=False, lookup=receiver_test) as sender:
        reply = deliver(sender, f"http://receiver.test:{server.port}/hook")

    assert reply.error == (
        f"destination_refused: destination receiver.test resolves to a loopback address, "
        f"{PRIVATE_RULE}"
    )
    assert server.log == []


@pytest.mark.parametrize(
    ("answers", "rule"),
    [
        (["8.8.8.8", "127.0.0.1"], "loopback"),
        (["2606:4700::1111", "8.8.8.8", "10.0.0.1"], "private"),
    ],
)
def test_refuses_a_name_with_one_private_address_among_public_ones(
    server: HTTPServer, answers: list[str], rule: str
) -> None:
    server.expect_request("/hook").respond_with_data("ok")
    lookup = FakeResolver({"mixed.test": answers})

    with sending(allow_private=False, lookup=lookup) as sender:
        reply = deliver(sender, f"http://mixed.test:{server.port}/hook")

    assert reply == Reply(
        None,
        None,
        f"destination_refused: destination mixed.test resolves to a {rule} address, {PRIVATE_RULE}",
    )  # the rule, never the address: a refusal must not map internal names
    assert server.log == []


def test_a_refusal_names_the_rule_never_the_embedded_address() -> None:
    lookup = FakeResolver({"six.test": ["2002:a00:1::1"], "nat.test": ["64:ff9b::a00:1"]})

    with sending(allow_private=False, lookup=lookup) as sender:
        for name in lookup.table:
            error = deliver(sender, f"https://{name}/hook").error or ""
            assert error.startswith(f"destination_refused: destination {name} resolves to a priv")
            assert "10.0.0.1" not in error and "a00:1" not in error


def bad_label(host: str, port: int) -> list[str]:
    raise UnicodeError("label empty or too long")


@pytest.mark.parametrize("allow_private", [False, True])
def test_a_name_that_does_not_resolve_is_reported_as_unresolved(allow_private: bool) -> None:
    lookup = FakeResolver({"empty.test": []})

    with sending(allow_private=allow_private, lookup=lookup) as sender:
        nowhere = deliver(sender, "https://nowhere.test/hook")
        empty = deliver(sender, "https://empty.test/hook")
    with sending(allow_private=allow_private, lookup=bad_label) as sender:
        invalid = deliver(sender, "https://invalid.test/hook")

    assert nowhere.error == (
        "destination_unresolved: destination nowhere.test does not resolve "
        "([Errno -2] Name or service not known)"
    )
    assert empty.error == "destination_unresolved: destination empty.test resolves to no address"
    assert invalid.error == (
        "destination_unresolved: destination invalid.test does not resolve "
        "(label empty or too long)"
    )
    assert lookup.calls == [("nowhere.test", 443), ("empty.test", 443)]


def test_does_not_follow_redirects(server: HTTPServer, receiver_test: FakeResolver) -> None:
    server.expect_request("/hook").respond_with_data(
        "moved", status=302, headers={"Location": f"http://127.0.0.1:{server.port}/elsewhere"}
    )
    server.expect_request("/elsewhere").respond_with_data("followed")

    with sending(lookup=receiver_test) as sender:
        reply = deliver(sender, f"http://receiver.test:{server.port}/hook")

    assert reply == Reply(302, "moved", None)
    assert [request.path for request, _ in server.log] == ["/hook"]


@pytest.mark.parametrize("status", [200, 307])
def test_reads_no_more_of_a_body_than_the_first_kib(
    status: int, receiver_test: FakeResolver
) -> None:
    # The receiver announces 100 MB, sends 1 KiB and stalls: reading more would end the
    # attempt at its deadline, as a timeout instead of the receiver's status.
    with Receiver.serving(status=status, declared_length=100_000_000) as receiver:
        with sending(lookup=receiver_test) as sender:
            reply = deliver(sender, f"http://receiver.test:{receiver.port}/hook", 10)

    assert reply == Reply(status, "x" * 1024, None)


def test_reuses_a_kept_alive_connection_to_the_vetted_address(
    keep_alive_server: Receiver, receiver_test: FakeResolver
) -> None:
    url = f"http://receiver.test:{keep_alive_server.port}/hook"

    with sending(lookup=receiver_test) as sender:
        replies = [deliver(sender, url) for _ in range(3)]

    assert replies == [OK] * 3
    assert len({seen.client_port for seen in keep_alive_server.seen}) == 1  # one connection
    assert receiver_test.calls == [("receiver.test", keep_alive_server.port)]  # vetted once


def test_ignores_proxies_and_netrc_from_the_environment(
    server: HTTPServer,
    receiver_test: FakeResolver,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing listens
    netrc = tmp_path / "netrc"
    netrc.write_text("machine receiver.test login apex password leaked\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    server.expect_request("/hook").respond_with_data("ok")

    with sending(lookup=receiver_test) as sender:
        reply = deliver(sender, f"http://receiver.test:{server.port}/hook")

    assert reply == OK
    (request, _), *_ = server.log
    assert "Authorization" not in request.headers


def echo_cookie(request: Request) -> Response:
    return Response(request.headers.get("Cookie", "none"))


def test_sends_no_cookies_back(server: HTTPServer, receiver_test: FakeResolver) -> None:
    server.expect_request("/set").respond_with_data("", headers={"Set-Cookie": "sid=abc; Path=/"})
    server.expect_request("/check").respond_with_handler(echo_cookie)
    base = f"http://receiver.test:{server.port}"

    with sending(lookup=receiver_test) as sender:
        assert deliver(sender, f"{base}/set").status == 200
        reply = deliver(sender, f"{base}/check")
        kept = len(sender.client.session.cookie_jar)

    assert reply == Reply(200, "none", None)
    assert kept == 0


def test_one_client_serves_many_attempts_at_once(
    keep_alive_server: Receiver, receiver_test: FakeResolver
) -> None:
    url = f"http://receiver.test:{keep_alive_server.port}/hook"

    with sending(lookup=receiver_test) as sender:
        outcomes = sender.attempt_all([url] * 64, BODY)

    assert [Reply.of(outcome) for outcome in outcomes] == [OK] * 64
    assert len(keep_alive_server.seen) == 64
    assert {seen.body for seen in keep_alive_server.seen} == {BODY}


def test_an_ipv6_literal_is_connected_to_as_written() -> None:
    lookup = FakeResolver({})

    with Receiver.serving(host="::1") as receiver, sending(lookup=lookup) as sender:
        reply = deliver(sender, f"http://[::1]:{receiver.port}/hook")

    assert reply == OK
    assert receiver.seen == [Seen("/hook", f"[::1]:{receiver.port}", ANY, BODY)]
    assert lookup.calls == []


def test_a_name_resolving_to_ipv6_is_connected_to_there() -> None:
    lookup = FakeResolver({"v6.test": ["::1"]})

    with Receiver.serving(host="::1") as receiver, sending(lookup=lookup) as sender:
        reply = deliver(sender, f"http://v6.test:{receiver.port}/hook")
    with sending(allow_private=False, lookup=lookup) as sender:
        refused = deliver(sender, f"http://v6.test:{receiver.port}/hook")

    assert reply == OK
    assert receiver.seen == [Seen("/hook", f"v6.test:{receiver.port}", ANY, BODY)]
    assert refused.error == (
        f"destination_refused: destination v6.test resolves to a loopback address, {PRIVATE_RULE}"
    )


@dataclass(frozen=True)
class Seen:
    path: str
    host: str | None
    client_port: int
    body: bytes


class Receiver:
    """A stdlib HTTP/1.1 server on loopback that keeps connections alive (werkzeug, under
    pytest-httpserver, closes each one) and records requests and, under TLS, SNI names.

    With `declared_length`, it announces that many body bytes, sends 1 KiB of "x" and then
    waits for the client to hang up.
    """

    def __init__(self) -> None:
        self.port = 0
        self.seen: list[Seen] = []
        self.sni: list[str | None] = []
        self.lock = threading.Lock()

    @classmethod
    @contextmanager
    def serving(
        cls,
        tls: ssl.SSLContext | None = None,
        status: int = 200,
        declared_length: int | None = None,
        host: str = "127.0.0.1",
    ) -> Iterator[Receiver]:
        receiver = cls()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver.lock:
                    receiver.seen.append(
                        Seen(self.path, self.headers.get("Host"), self.client_address[1], body)
                    )
                self.send_response(status)
                if status in (301, 302, 303, 307, 308):
                    self.send_header("Location", "/elsewhere")
                if declared_length is None:
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                    return
                self.send_header("Content-Length", str(declared_length))
                self.end_headers()
                self.wfile.write(b"x" * 1024)
                self.wfile.flush()
                self.rfile.read()  # until the client closes the connection
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # socketserver's default backlog of 5 drops connections 64 clients make at once,
            # and their SYNs are retried 1, 3, 7 s later: the attempts then run into timeouts.
            request_queue_size = 128
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that rejects our certificate aborts mid-request: expected

        httpd = Server((host, 0), Handler)
        if tls is not None:

            def record_sni(_sock: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
                with receiver.lock:
                    receiver.sni.append(name)

            tls.sni_callback = record_sni
            httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
        receiver.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.start()
        try:
            yield receiver
        finally:
            httpd.shutdown()
            thread.join()
            httpd.server_close()


@pytest.fixture
def keep_alive_server() -> Iterator[Receiver]:
    with Receiver.serving() as receiver:
        yield receiver


# --- TLS: SNI and certificate checks use the hostname while the socket goes to the IP --------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PrivateCa:
    """A throwaway CA and a leaf certificate for receiver.test and alt.test (not other.test)."""
    return private_ca(tmp_path_factory.mktemp("pki"), ["receiver.test", "alt.test"])


@pytest.fixture
def tls_server(pki: PrivateCa) -> Iterator[Receiver]:
    with Receiver.serving(pki.server_context()) as receiver:
        yield receiver


@pytest.fixture
def tls_names() -> FakeResolver:
    return FakeResolver(
        {name: ["127.0.0.1"] for name in ("receiver.test", "alt.test", "other.test")}
    )


def certificate_refused(reason: str) -> Reply:
    return Reply(None, None, f"connection_error: SSLError (certificate verify failed: {reason})")


def test_https_verifies_the_hostname_and_sends_it_as_sni(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    port = tls_server.port

    with sending(lookup=tls_names, ca_bundle=str(pki.ca_file)) as sender:
        reply = deliver(sender, f"https://receiver.test:{port}/hook")

    assert reply == OK
    assert tls_server.sni == ["receiver.test"]
    assert tls_server.seen == [Seen("/hook", f"receiver.test:{port}", ANY, BODY)]


def test_https_refuses_a_certificate_that_does_not_name_the_host(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    with sending(lookup=tls_names, ca_bundle=str(pki.ca_file)) as sender:
        reply = deliver(sender, f"https://other.test:{tls_server.port}/hook")

    assert reply == certificate_refused(
        "Hostname mismatch, certificate is not valid for 'other.test'."
    )
    assert tls_server.sni == ["other.test"]
    assert tls_server.seen == []


def test_https_refuses_an_unknown_issuer(tls_server: Receiver, tls_names: FakeResolver) -> None:
    with sending(lookup=tls_names) as sender:  # certifi's roots only
        reply = deliver(sender, f"https://receiver.test:{tls_server.port}/hook")

    assert reply == certificate_refused("unable to get local issuer certificate")
    assert tls_server.seen == []


def test_https_connections_are_kept_per_hostname_not_per_ip(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    port = tls_server.port

    with sending(lookup=tls_names, ca_bundle=str(pki.ca_file)) as sender:
        replies = [deliver(sender, f"https://receiver.test:{port}/hook") for _ in range(2)]
        replies.append(deliver(sender, f"https://alt.test:{port}/hook"))
        # Same IP as the verified receiver.test connection, but it must not be reused.
        other = deliver(sender, f"https://other.test:{port}/hook")

    assert replies == [OK] * 3
    assert other.error and other.error.startswith("connection_error: SSLError (certificate")
    assert tls_server.sni == ["receiver.test", "alt.test", "other.test"]  # one handshake each
    assert [seen.host for seen in tls_server.seen] == [
        f"receiver.test:{port}",
        f"receiver.test:{port}",
        f"alt.test:{port}",
    ]
    first, second, alt = (seen.client_port for seen in tls_server.seen)
    assert first == second != alt  # receiver.test kept its connection; alt.test got its own


# --- an egress proxy: it resolves the names; TLS is still verified end to end ---------------


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    with ConnectProxy.serving(deny=frozenset({"denied.test"})) as started:
        yield started


def test_tunnels_to_the_hostname_through_the_proxy_without_resolving_it(
    tls_server: Receiver, pki: PrivateCa, proxy: ConnectProxy
) -> None:
    # receiver.test resolves nowhere here: only the proxy knows where it is. The proxy's own
    # name resolves to loopback, which is no destination, yet it is ours and connected to.
    port = tls_server.port
    lookup = FakeResolver({"proxy.test": ["127.0.0.1"]})
    via = proxy.url.replace("127.0.0.1", "proxy.test")

    with sending(False, lookup=lookup, ca_bundle=str(pki.ca_file), egress_proxy=via) as sender:
        reply = deliver(sender, f"https://receiver.test:{port}/hook")
        denied = deliver(sender, f"https://denied.test:{port}/hook")
        literal = deliver(sender, f"https://127.0.0.1:{port}/hook")

    assert reply == OK
    assert tls_server.sni == ["receiver.test"]  # the tunnel carries TLS for the hostname
    assert tls_server.seen == [Seen("/hook", f"receiver.test:{port}", ANY, BODY)]
    assert denied.error == (
        f"egress_proxy_error: egress proxy refused CONNECT denied.test:{port}: 403 Forbidden"
    )
    assert literal.error == "destination_refused: destination 127.0.0.1 is loopback, refused"
    assert proxy.tunnels == [f"receiver.test:{port}", f"denied.test:{port}"]  # not 127.0.0.1
    assert lookup.calls == [("proxy.test", proxy.port)]


def test_a_proxy_that_does_not_resolve_or_answer_is_an_egress_proxy_error() -> None:
    lookup = FakeResolver({})
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]  # nothing listens once it is closed

    with sending(False, lookup=lookup, egress_proxy="http://proxy.test:4750") as sender:
        unresolved = deliver(sender, "https://receiver.test/hook")
    with sending(False, lookup=lookup, egress_proxy=f"http://127.0.0.1:{port}") as sender:
        unreachable = deliver(sender, "https://receiver.test/hook")

    assert unresolved.error == (
        "egress_proxy_error: egress proxy unreachable: destination proxy.test does not resolve "
        "([Errno -2] Name or service not known)"
    )
    assert unreachable.error == (
        f"egress_proxy_error: [Errno 111] Connect call failed ('127.0.0.1', {port})"
    )


@contextmanager
def refusing_proxy(heads: list[bytes]) -> Iterator[int]:
    """A proxy on 127.0.0.1 that records the head of each request and answers 407."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was closed
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head and (chunk := conn.recv(4096)):
                    head += chunk
                heads.append(head)
                conn.sendall(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join(5)


def test_proxy_credentials_become_a_basic_proxy_authorization() -> None:
    heads: list[bytes] = []

    with refusing_proxy(heads) as port:
        via = f"http://apex:s%40cret@127.0.0.1:{port}"
        with sending(False, egress_proxy=via) as sender:
            reply = deliver(sender, "https://receiver.test/hook")

    assert reply.error == (
        "egress_proxy_error: egress proxy refused CONNECT receiver.test:443: "
        "407 Proxy Authentication Required"
    )
    (head,) = heads
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "CONNECT receiver.test:443 HTTP/1.1"
    assert "Proxy-Authorization: Basic YXBleDpzQGNyZXQ=" in lines  # base64("apex:s@cret")
