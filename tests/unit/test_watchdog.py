"""The attempt watchdog over real socket pairs: blocked reads end at the deadline, cuts."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from apex.delivery.watchdog import Watchdog, current


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def test_a_blocked_read_ends_at_the_deadline(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    with Watchdog().watch(0.3) as watch:
        watch.attach(ours)
        theirs.sendall(b"x")  # a drip: each read returns quickly, the attempt does not end
        assert ours.recv(1) == b"x"
        assert ours.recv(1) == b""  # woken by the shutdown, not by the peer
    assert watch.expired and watch.cause == "timeout"


def test_an_attempt_that_ends_in_time_is_not_cut(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, theirs = pair
    with Watchdog().watch(0.2) as watch:
        watch.attach(ours)
        assert current() is watch
    time.sleep(0.4)
    theirs.sendall(b"late")
    assert not watch.expired and current() is None
    assert ours.recv(4) == b"late"  # the socket itself was left alone


def test_a_socket_attached_after_the_deadline_is_shut_at_once(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    with Watchdog().watch(0.05) as watch:
        time.sleep(0.2)
        watch.attach(ours)
        assert ours.recv(1) == b""
    assert watch.expired


def test_cut_brings_running_and_later_deadlines_forward(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, _ = pair
    dog = Watchdog()
    with dog.watch(30) as running:
        running.attach(ours)
        threading.Timer(0.1, dog.cut, args=(0.1,)).start()
        assert ours.recv(1) == b""
    assert running.expired and running.cause == "shutdown"
    with dog.watch(30) as later:
        assert later.remaining() < 1 and later.cause == "shutdown"


def test_the_phase_is_kept_as_it_was_when_cut() -> None:
    with Watchdog().watch(0.05) as watch:
        watch.enter("sending the request")
        time.sleep(0.2)
        watch.enter("waiting for the response headers")
    assert watch.expired and watch.phase == "sending the request"
