"""SSRF guard: address classification, resolution, and the pinned transport (loopback only)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest.mock import ANY

import pytest
import requests
from pytest_httpserver import HTTPServer
from urllib3.util import Timeout
from werkzeug import Request, Response

from apex.delivery.ssrf import (
    PinnedAdapter,
    is_public_address,
    new_session,
    post,
    refusal_reason,
    resolve_public,
)
from apex.errors import DestinationRefusedError, DestinationUnresolvedError
from tests.integration.egress import PrivateCa, private_ca

TIMEOUT = Timeout(connect=5, total=15)
BODY = b'{"id":"evt_1","type":"lead.created"}'
HEADERS = {"content-type": "application/json", "webhook-id": "evt_1"}


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


# --- the pinned transport, against real servers on 127.0.0.1 -------------------------------


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes


def deliver(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str] = HEADERS,
    timeout: Timeout = TIMEOUT,
) -> Reply:
    """Use post() as a delivery does: keep the status and at most the first KiB of the body."""
    with post(session, url, BODY, headers, timeout) as response:
        return Reply(response.status_code, response.raw.read(1024))


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

    with new_session(allow_private=True, lookup=receiver_test) as session:
        reply = deliver(session, f"http://receiver.test:{server.port}/hook")

    assert reply == Reply(200, b"ok")
    (request, _), *_ = server.log
    assert request.headers["Host"] == f"receiver.test:{server.port}"
    assert request.headers["webhook-id"] == "evt_1"
    assert request.headers["content-type"] == "application/json"
    assert receiver_test.calls == [("receiver.test", server.port)]


def test_refuses_loopback_without_connecting(server: HTTPServer) -> None:
    server.expect_request("/hook").respond_with_data("ok")

    with new_session(allow_private=False) as session:
        for host in ("localhost", "127.0.0.1", "[::1]"):
            with pytest.raises(DestinationRefusedError, match="loopback"):
                deliver(session, f"http://{host}:{server.port}/hook")

    assert server.log == []


def test_refuses_a_name_resolving_to_a_private_address_without_connecting(
    server: HTTPServer, receiver_test: FakeResolver
) -> None:
    server.expect_request("/hook").respond_with_data("ok")

    with new_session(allow_private=False, lookup=receiver_test) as session:
        with pytest.raises(DestinationRefusedError, match="receiver.test resolves to a loopback"):
            deliver(session, f"http://receiver.test:{server.port}/hook")

    assert server.log == []


def test_does_not_follow_redirects(server: HTTPServer, receiver_test: FakeResolver) -> None:
    server.expect_request("/hook").respond_with_data(
        "moved", status=302, headers={"Location": f"http://127.0.0.1:{server.port}/elsewhere"}
    )
    server.expect_request("/elsewhere").respond_with_data("followed")

    with new_session(allow_private=True, lookup=receiver_test) as session:
        reply = deliver(session, f"http://receiver.test:{server.port}/hook")

    assert reply == Reply(302, b"moved")
    assert [request.path for request, _ in server.log] == ["/hook"]


@pytest.mark.parametrize("status", [200, 307])
def test_reads_no_more_of_a_body_than_asked(status: int, receiver_test: FakeResolver) -> None:
    # The receiver announces 100 MB, sends 1 KiB and stalls: reading more would hang until
    # the timeout (a redirect is where requests' Session.send would read it all).
    with Receiver.serving(status=status, declared_length=100_000_000) as receiver:
        with new_session(allow_private=True, lookup=receiver_test) as session:
            started = time.monotonic()
            reply = deliver(session, f"http://receiver.test:{receiver.port}/hook")
            elapsed = time.monotonic() - started

    assert reply == Reply(status, b"x" * 1024)
    assert elapsed < 5


def test_reuses_the_pinned_connection_and_vets_every_request(
    keep_alive_server: Receiver, receiver_test: FakeResolver
) -> None:
    url = f"http://receiver.test:{keep_alive_server.port}/hook"

    with new_session(allow_private=True, lookup=receiver_test) as session:
        for _ in range(3):
            assert deliver(session, url) == Reply(200, b"ok")
        adapter = session.get_adapter(url)
        assert isinstance(adapter, PinnedAdapter)
        pools = len(adapter.poolmanager.pools)

    assert len({seen.client_port for seen in keep_alive_server.seen}) == 1  # one connection
    assert pools == 1
    assert len(receiver_test.calls) == 3  # yet every request was resolved and vetted afresh


def test_a_new_answer_gets_a_new_pool_not_the_old_pinned_connection(
    keep_alive_server: Receiver, receiver_test: FakeResolver
) -> None:
    url = f"http://receiver.test:{keep_alive_server.port}/hook"

    with new_session(allow_private=True, lookup=receiver_test) as session:
        assert deliver(session, url).status == 200
        # The name now points where nothing listens: the request must go there, not through
        # the kept-alive connection to 127.0.0.1.
        receiver_test.table["receiver.test"] = ["127.0.0.2"]
        with pytest.raises(requests.ConnectionError):
            deliver(session, url, timeout=Timeout(connect=2, total=5))

    assert len(keep_alive_server.seen) == 1


def test_ignores_proxies_from_the_environment(
    server: HTTPServer, receiver_test: FakeResolver, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # discard port: nothing listens
    server.expect_request("/hook").respond_with_data("ok")

    with new_session(allow_private=True, lookup=receiver_test) as session:
        reply = deliver(session, f"http://receiver.test:{server.port}/hook")

    assert reply == Reply(200, b"ok")


def test_sends_no_cookies_back(server: HTTPServer, receiver_test: FakeResolver) -> None:
    server.expect_request("/set").respond_with_data("", headers={"Set-Cookie": "sid=abc; Path=/"})
    server.expect_request("/check").respond_with_handler(echo_cookie)
    base = f"http://receiver.test:{server.port}"

    with new_session(allow_private=True, lookup=receiver_test) as session:
        deliver(session, f"{base}/set")
        reply = deliver(session, f"{base}/check")
        session.get(f"{base}/set").close()  # even plain Session use stores none

    assert reply == Reply(200, b"none")
    assert len(session.cookies) == 0


def test_one_session_serves_many_threads(
    keep_alive_server: Receiver, receiver_test: FakeResolver
) -> None:
    url = f"http://receiver.test:{keep_alive_server.port}/hook"

    with new_session(allow_private=True, lookup=receiver_test, pool_maxsize=4) as session:
        with ThreadPoolExecutor(max_workers=8) as pool:
            replies = list(pool.map(lambda _: deliver(session, url), range(64)))

    assert replies == [Reply(200, b"ok")] * 64
    assert len(keep_alive_server.seen) == 64


def test_post_requires_a_pinned_session() -> None:
    with requests.Session() as session:
        with pytest.raises(TypeError, match="no PinnedAdapter"):
            deliver(session, "https://receiver.test/hook")


def echo_cookie(request: Request) -> Response:
    return Response(request.headers.get("Cookie", "none"))


@dataclass(frozen=True)
class Seen:
    path: str
    host: str | None
    client_port: int
    body: bytes


class Receiver:
    """A stdlib HTTP/1.1 server on 127.0.0.1 that keeps connections alive (werkzeug, under
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

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that rejects our certificate aborts mid-request: expected

        httpd = Server(("127.0.0.1", 0), Handler)
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
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cert_file, pki.key_file)
    with Receiver.serving(context) as receiver:
        yield receiver


@pytest.fixture
def tls_names() -> FakeResolver:
    return FakeResolver(
        {name: ["127.0.0.1"] for name in ("receiver.test", "alt.test", "other.test")}
    )


def tls_session(pki: PrivateCa, lookup: FakeResolver) -> requests.Session:
    session = new_session(allow_private=True, lookup=lookup)
    session.verify = str(pki.ca_file)
    return session


def test_https_verifies_the_hostname_and_sends_it_as_sni(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    port = tls_server.port

    with tls_session(pki, tls_names) as session:
        reply = deliver(session, f"https://receiver.test:{port}/hook")

    assert reply == Reply(200, b"ok")
    assert tls_server.sni == ["receiver.test"]
    assert tls_server.seen == [Seen("/hook", f"receiver.test:{port}", ANY, BODY)]


def test_https_refuses_a_certificate_that_does_not_name_the_host(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    with tls_session(pki, tls_names) as session:
        with pytest.raises(requests.exceptions.SSLError):
            deliver(session, f"https://other.test:{tls_server.port}/hook")

    assert tls_server.sni == ["other.test"]
    assert tls_server.seen == []


def test_https_refuses_an_unknown_issuer(tls_server: Receiver, tls_names: FakeResolver) -> None:
    with new_session(allow_private=True, lookup=tls_names) as session:  # system CAs only
        with pytest.raises(requests.exceptions.SSLError):
            deliver(session, f"https://receiver.test:{tls_server.port}/hook")

    assert tls_server.seen == []


def test_https_pools_are_keyed_by_hostname_not_only_by_ip(
    tls_server: Receiver, pki: PrivateCa, tls_names: FakeResolver
) -> None:
    port = tls_server.port

    with tls_session(pki, tls_names) as session:
        for _ in range(2):
            assert deliver(session, f"https://receiver.test:{port}/hook").status == 200
        assert deliver(session, f"https://alt.test:{port}/hook").status == 200
        # Same IP as the verified receiver.test connection, but it must not be reused.
        with pytest.raises(requests.exceptions.SSLError):
            deliver(session, f"https://other.test:{port}/hook")
        adapter = session.get_adapter(f"https://receiver.test:{port}/")
        assert isinstance(adapter, PinnedAdapter)
        names = sorted(key.key_server_hostname or "" for key in adapter.poolmanager.pools.keys())

    assert names == ["alt.test", "other.test", "receiver.test"]
    assert tls_server.sni == ["receiver.test", "alt.test", "other.test"]  # one handshake each
    assert [seen.host for seen in tls_server.seen] == [
        f"receiver.test:{port}",
        f"receiver.test:{port}",
        f"alt.test:{port}",
    ]
    first, second, alt = (seen.client_port for seen in tls_server.seen)
    assert first == second != alt  # receiver.test kept its connection; alt.test got its own
