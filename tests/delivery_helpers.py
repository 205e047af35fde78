"""Delivery attempts as a worker's lane makes them, for tests: a transport.Client created on an
EventLoop of its own thread, and attempt() run there."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from apex.delivery.attempt import Outcome, attempt
from apex.delivery.transport import Client, EventLoop

HEADERS = {"webhook-id": "evt_once"}


class Sender:
    """One Client on one EventLoop: attempts made through it share its connections."""

    def __init__(self, loop: EventLoop, client: Client) -> None:
        self.loop = loop
        self.client = client

    def attempt(
        self,
        url: str,
        body: bytes = b"{}",
        connect_timeout: float = 5,
        total_timeout: float = 15,
        headers: Mapping[str, str] = HEADERS,
    ) -> Outcome:
        return self.loop.run(self._attempt(url, body, connect_timeout, total_timeout, headers))

    def attempt_all(self, urls: list[str], body: bytes = b"{}") -> list[Outcome]:
        """An attempt to each of `urls`, all at once on the loop (as concurrent lanes make them)."""

        async def run() -> list[Outcome]:
            attempts = (self._attempt(url, body, 5, 15, HEADERS) for url in urls)
            return list(await asyncio.gather(*attempts))

        return self.loop.run(run())

    async def _attempt(
        self,
        url: str,
        body: bytes,
        connect_timeout: float,
        total_timeout: float,
        headers: Mapping[str, str],
    ) -> Outcome:
        now = datetime.now(UTC)
        return await attempt(self.client, url, body, headers, connect_timeout, total_timeout, now)


@contextmanager
def sending(allow_private: bool = True, **client: Any) -> Iterator[Sender]:
    """A Sender whose Client is Client.create(allow_private, **client); closed on exit."""
    loop = EventLoop("test-attempt")

    async def create() -> Client:
        return Client.create(allow_private, **client)

    try:
        http = loop.run(create())
        try:
            yield Sender(loop, http)
        finally:
            loop.run(http.close())
    finally:
        loop.stop()


def attempt_once(
    url: str, body: bytes, connect_timeout: float, total_timeout: float, **client: Any
) -> Outcome:
    """One attempt through a new client (private destinations allowed) on an event loop of its
    own thread, as a worker's lane makes it (a lookup stuck on an executor thread then holds
    nothing up)."""
    with sending(**client) as sender:
        return sender.attempt(url, body, connect_timeout, total_timeout)
