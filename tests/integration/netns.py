"""Test hosts in network namespaces of their own (Linux, as root): one bridge in a hub namespace,
one veth per host, addresses in a private /24 that exists only inside these namespaces. Nothing
is added to the machine's own namespace, and everything goes at `destroy()`."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

CLONE_NEWNET = 0x40000000
SUBNET = "10.213.7"  # private, and reachable only from the namespaces made here
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no `ip`, a kernel or container that
    refuses), or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"apex-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except (OSError, RuntimeError) as exc:
        return f"cannot create a network namespace: {exc}"
    _ip("netns", "delete", probe)
    return None


def _setns(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns {path}: {os.strerror(errno)}")
    finally:
        os.close(fd)


@dataclass(frozen=True)
class Host:
    """One namespace with one address on the network."""

    namespace: str
    address: str

    def command(self, *args: str) -> list[str]:
        """`args` run inside this host (`ip netns exec` execs it: the pid stays the same)."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def pids(self) -> list[int]:
        """Every process running inside this host."""
        result = subprocess.run(
            ["ip", "netns", "pids", self.namespace], capture_output=True, text=True, timeout=10
        )
        return [int(pid) for pid in result.stdout.split()]

    def kill_all(self) -> list[int]:
        """SIGKILL every process of this host, as a host that loses power; returns their pids
        once none is left (or after a few rounds, for a process forked meanwhile)."""
        killed: list[int] = []
        for _ in range(5):
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                killed.append(pid)
            time.sleep(0.05)
        return killed

    @contextmanager
    def inside(self) -> Iterator[None]:
        """Move the calling thread into this host for the block. Sockets it opens meanwhile
        stay in this host's namespace, and threads it starts meanwhile begin there."""
        home_fd = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
        try:
            _setns(f"/run/netns/{self.namespace}")
            try:
                yield
            finally:
                if _libc.setns(home_fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back to the test's namespace")
        finally:
            os.close(home_fd)


class Network:
    """A bridge in a hub namespace and hosts on it, named with a random tag so concurrent runs
    never meet."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.hub = f"apex-{self.tag}-hub"
        self.hosts: dict[str, Host] = {}
        _ip("netns", "add", self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")

    def add(self, name: str) -> Host:
        """A new host `name` with the next address, linked to the bridge."""
        host = Host(f"apex-{self.tag}-{name}", f"{SUBNET}.{len(self.hosts) + 10}")
        port = f"p{len(self.hosts)}"
        _ip("netns", "add", host.namespace)
        self.hosts[name] = host
        # Made in the hub with its peer placed straight into the host: never in the machine's own.
        _ip("-n", self.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0",
            "netns", host.namespace)  # fmt: skip
        _ip("-n", self.hub, "link", "set", port, "master", "br0", "up")
        _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
        _ip("-n", host.namespace, "link", "set", "eth0", "up")
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        return host

    def destroy(self) -> None:
        """Kill whatever still runs on a host (it would keep the namespace, and its veth, alive)
        and delete every namespace; their veths go with them."""
        for host in self.hosts.values():
            host.kill_all()
        for namespace in [host.namespace for host in self.hosts.values()] + [self.hub]:
            subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=10)
        self.hosts.clear()
