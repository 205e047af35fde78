"""Pathological receivers on 127.0.0.1, written on raw sockets: they drip, hang, never read,
never end or reset, and count how many requests per webhook-id they hold at once."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

MODES = ("drip_headers", "drip_body", "hang", "never_read", "endless_body", "reset")
DRIP = 1.0  # seconds between two dripped bytes
_HEADERS = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Padding: " + b"p" * 200 + b"\r\n"


@dataclass
class Held:
    """One connection as the receiver saw it: when it was accepted and when the client left."""

    webhook_id: str
    opened: float
    closed: float | None = None


class HostileReceiver:
    """One misbehaving endpoint (see MODES); `url` is where to subscribe.

    drip_headers: answers one byte every DRIP seconds, starting with the status line.
    drip_body:    sends complete headers for a 1 KiB body, then one byte every DRIP seconds.
    hang:         reads the request, never answers.
    never_read:   reads nothing (a tiny receive buffer, so a large request blocks the sender);
                  the webhook-id is peeked at without consuming a byte.
    endless_body: sends headers without a length, then body bytes as fast as it can, forever.
    reset:        reads the request, sends half a status line and resets the connection.

    Each connection is held until the client goes away (or the receiver stops)."""

    def __init__(self, mode: str) -> None:
        assert mode in MODES, mode
        self.mode = mode
        self.held: list[Held] = []
        self.most_at_once: Counter[str] = Counter()
        self._at_once: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if mode == "never_read":  # accepted sockets inherit it
            self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/{mode}"
        self._threads: list[threading.Thread] = []

    @classmethod
    @contextmanager
    def serving(cls, mode: str) -> Iterator[HostileReceiver]:
        receiver = cls(mode)
        accept = threading.Thread(target=receiver._accept, name=f"hostile-{mode}", daemon=True)
        accept.start()
        try:
            yield receiver
        finally:
            receiver._stop.set()
            accept.join(5)
            for thread in list(receiver._threads):
                thread.join(5)
            receiver._listener.close()

    def durations(self) -> list[float]:
        """Seconds each finished connection was held (accept to the client's hang-up)."""
        with self._lock:
            return [h.closed - h.opened for h in self.held if h.closed is not None]

    def _accept(self) -> None:
        self._listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        opened = time.monotonic()
        with conn:
            try:
                head = self._peek_head(conn) if self.mode == "never_read" else self._read_head(conn)
            except OSError:
                return  # the client left before its headers were complete
            if head is None:
                return
            held = Held(_webhook_id(head), opened)
            with self._lock:
                self.held.append(held)
                self._at_once[held.webhook_id] += 1
                self.most_at_once[held.webhook_id] = max(
                    self.most_at_once[held.webhook_id], self._at_once[held.webhook_id]
                )
            try:
                getattr(self, f"_{self.mode}")(conn)
            except OSError:
                pass  # the client went away
            finally:
                with self._lock:
                    held.closed = time.monotonic()
                    self._at_once[held.webhook_id] -= 1

    def _read_head(self, conn: socket.socket) -> bytes | None:
        """The request's headers, and its body read to Content-Length (the drip starts after)."""
        data = b""
        conn.settimeout(10)
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next(
            (
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ),
            0,
        )
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return head

    def _peek_head(self, conn: socket.socket) -> bytes | None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not self._stop.is_set():
            seen = conn.recv(4096, socket.MSG_PEEK)
            if b"\r\n\r\n" in seen:
                return seen.partition(b"\r\n\r\n")[0]
            if not seen:
                return None
            time.sleep(0.01)
        return None

    def _client_left(self, conn: socket.socket, wait: float) -> bool:
        """Wait up to `wait` seconds; True once the client closed or reset the connection."""
        readable, _, _ = select.select([conn], [], [], wait)
        if not readable:
            return False
        try:
            return conn.recv(65536, socket.MSG_PEEK if self.mode == "never_read" else 0) == b""
        except OSError:
            return True

    def _hold(self, conn: socket.socket) -> None:
        while not self._stop.is_set() and not self._client_left(conn, 0.05):
            pass

    def _drip(self, conn: socket.socket, data: bytes) -> None:
        for byte in data:
            if self._stop.is_set() or self._client_left(conn, DRIP):
                return
            conn.sendall(bytes([byte]))
        self._hold(conn)

    def _drip_headers(self, conn: socket.socket) -> None:
        self._drip(conn, _HEADERS + b"Content-Length: 2\r\n\r\nok")

    def _drip_body(self, conn: socket.socket) -> None:
        conn.sendall(_HEADERS + b"Content-Length: 1024\r\n\r\n")
        self._drip(conn, b"b" * 1024)

    def _hang(self, conn: socket.socket) -> None:
        self._hold(conn)

    def _never_read(self, conn: socket.socket) -> None:
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 0.05)
            # Readable with nothing new to peek at: the client closed. A full buffer with
            # more waiting stays readable too, so compare with what was peeked before.
            if readable and _closed_without_reading(conn):
                return

    def _endless_body(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        conn.settimeout(1)
        block = b"e" * 16384
        while not self._stop.is_set():
            try:
                conn.sendall(block)
            except TimeoutError:
                continue

    def _reset(self, conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 2")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _closed_without_reading(conn: socket.socket) -> bool:
    """Whether the peer has gone, without consuming what it sent: a reset or a FIN shows in
    SO_ERROR or in TCP_INFO's state."""
    if conn.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
        return True
    info = conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    state = info[0]
    return state != 1  # TCP_ESTABLISHED; CLOSE_WAIT (8) once the client closed


def _webhook_id(head: bytes) -> str:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"webhook-id":
            return value.strip().decode()
    return ""
