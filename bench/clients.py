"""The baseline senders the worker is compared with: what a plain sender posting the same signed
bodies to the same receiver achieves in one process.

- `requests_loop`: one requests.Session posting one delivery after another (keep-alive, TLS
  verified with the benchmark's CA), the way a simple webhook sender works;
- `aiohttp_burst`: one aiohttp session on one event loop with `in_flight` requests at a time,
  nothing else to do: the ceiling of one asyncio process, the worker's design;
Each returns requests per second; a request not answered 2xx raises RuntimeError.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time

import aiohttp
import requests

from apex.delivery.signing import generate_secret, sign
from bench.system import DATA

SECRET = generate_secret()
BODY = json.dumps({"id": "evt_bench", "type": "lead.created", "data": DATA}).encode()


def _headers(n: int) -> dict[str, str]:
    return {
        "content-type": "application/json",
        **sign([SECRET], f"msg_b{n}", int(time.time()), BODY),
    }


def requests_loop(url: str, count: int, ca_file: str | None) -> float:
    verify = ca_file or True  # per request: a session's is overridden by REQUESTS_CA_BUNDLE
    with requests.Session() as session:
        started = time.perf_counter()
        for n in range(count):
            response = session.post(url, data=BODY, headers=_headers(n), timeout=30, verify=verify)
            if not response.ok:
                raise RuntimeError(f"{url} answered {response.status_code}")
        return count / (time.perf_counter() - started)


async def _burst(url: str, count: int, in_flight: int, ca_file: str | None) -> float:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    connector = aiohttp.TCPConnector(limit=in_flight, ssl=context if context else True)
    numbers = iter(range(count))

    async def lane(session: aiohttp.ClientSession) -> None:
        for n in numbers:
            async with session.post(url, data=BODY, headers=_headers(n)) as response:
                await response.read()
                if response.status >= 300:
                    raise RuntimeError(f"{url} answered {response.status}")

    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(lane(session) for _ in range(in_flight)))
        return count / (time.perf_counter() - started)


def aiohttp_burst(url: str, count: int, in_flight: int, ca_file: str | None) -> float:
    return asyncio.run(_burst(url, count, in_flight, ca_file))
