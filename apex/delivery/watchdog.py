"""Wall-clock deadlines for delivery attempts: one watchdog thread shuts down the sockets of an
attempt that outlives its deadline, whatever it is blocked on (TLS, sending, headers, body).

A per-read socket timeout bounds each recv, not the attempt: a receiver dripping one byte a
second keeps every recv short. Shutting the socket down (SHUT_RDWR) from another thread wakes
a blocked recv or send at once, so the attempt ends at its deadline and the caller records it
as a timeout (see Watch.expired)."""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()


class Watch:
    """One attempt's deadline (time.monotonic) and the sockets it has used so far.

    `expired` is set once the watchdog cut the attempt; `cause` then says why ("timeout", or
    "shutdown" when the process is stopping). Attached sockets are shut down at the deadline;
    a socket attached after it is shut down at once."""

    def __init__(self, deadline: float, lock: threading.RLock) -> None:
        self.deadline = deadline
        self.expired = False
        self.cause = ""
        self.phase = "starting"
        self._lock = lock
        self._sockets: list[socket.socket] = []
        self._closed = False

    def enter(self, phase: str) -> None:
        """Name what the attempt does now (for its error); kept as it was once cut."""
        if not self.expired:
            self.phase = phase

    def remaining(self) -> float:
        """Seconds left before the deadline; 0 once it has passed."""
        return max(0.0, self.deadline - time.monotonic())

    def attach(self, sock: socket.socket) -> None:
        """Watch `sock` (any socket, TLS too) until the attempt ends. A duplicate of its file
        descriptor is kept, so TLS wrapping (which detaches the original object) or the
        connection closing first leave nothing dangling."""
        with self._lock:
            if self._closed or sock.fileno() < 0:
                return  # a socket already closed has nothing left to cut
            dup = socket.socket(fileno=os.dup(sock.fileno()))
            self._sockets.append(dup)
            if self.expired:
                _shut(dup)

    def _expire(self, cause: str) -> None:
        with self._lock:
            if self._closed or self.expired:
                return
            self.expired = True
            self.cause = cause
            for sock in self._sockets:
                _shut(sock)

    def _close(self) -> None:
        with self._lock:
            self._closed = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    """Wake whatever blocks on `sock` now, and have its last close reset the connection (no
    FIN queued behind megabytes the receiver never reads, no orphaned socket holding them)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by the connection itself


def current() -> Watch | None:
    """The watch of the attempt running on this thread, if any (for the transport's hooks)."""
    return getattr(_local, "watch", None)


class Watchdog:
    """Cuts watched attempts at their deadlines. One thread, started on first use; safe to share
    between threads. Finished attempts cost nothing but a heap entry until their deadline."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._cap: tuple[float, str] | None = None
        self._thread: threading.Thread | None = None

    @contextmanager
    def watch(self, timeout: float) -> Iterator[Watch]:
        """Watch the attempt run inside the block, on this thread, for `timeout` seconds.

        The block's sockets are shut down at the deadline; the block then sees an OSError or
        an EOF from its transport and should check `expired`. Sockets are released at exit."""
        deadline = time.monotonic() + timeout
        with self._lock:
            cause = "timeout"
            if self._cap is not None and self._cap[0] < deadline:
                deadline, cause = self._cap
            watch = Watch(deadline, self._lock)
            watch.cause = cause
            self._push(watch)
        previous, _local.watch = current(), watch
        try:
            yield watch
        finally:
            _local.watch = previous
            watch._close()

    def cut(self, within: float, cause: str = "shutdown") -> None:
        """Bring every deadline, of attempts running now and of those started later, forward to
        at most `within` seconds from now (a stopping process must exit in time)."""
        cap = time.monotonic() + within
        with self._lock:
            if self._cap is None or cap < self._cap[0]:
                self._cap = (cap, cause)
            entries = [w for _, _, w in self._heap]
            self._heap = []
            for watch in entries:
                if watch.deadline > cap:
                    watch.deadline = cap
                    watch.cause = cause
                self._push(watch)
            self._wake.notify()

    def _push(self, watch: Watch) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="watchdog", daemon=True)
            self._thread.start()
        first = not self._heap or watch.deadline < self._heap[0][0]
        heapq.heappush(self._heap, (watch.deadline, next(self._order), watch))
        if first:
            self._wake.notify()

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _, _, watch = heapq.heappop(self._heap)
                    watch._expire(watch.cause or "timeout")
                self._wake.wait(self._heap[0][0] - now if self._heap else None)


WATCHDOG = Watchdog()
"""The process's watchdog: attempts use it, and a stopping worker cuts it (see cut)."""
