"""A fast local webhook receiver for benchmarks: aiohttp's low-level server on one event loop.

`python -m bench.receiver HTTP_PORT STATS_PORT [HTTPS_PORT CERT KEY]`. The HTTP and HTTPS ports
are bound with SO_REUSEPORT, so several of these processes share them (the kernel spreads the
connections); each process has a stats port of its own. POST /ok… answers 204 at once,
/slow… after SLOW_SECONDS, /hang… after HANG_SECONDS. Every POST's arrival time is kept by its
webhook-id; GET on the stats port returns this process's as JSON and counts, DELETE forgets them.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import sys
import time

from aiohttp import web
from aiohttp.web_request import BaseRequest

SLOW_SECONDS = 0.05
HANG_SECONDS = 20.0
arrivals: dict[str, float] = {}


async def receive(request: BaseRequest) -> web.StreamResponse:
    await request.read()
    path = request.path
    if path.startswith("/slow"):
        await asyncio.sleep(SLOW_SECONDS)
    elif path.startswith("/hang"):
        await asyncio.sleep(HANG_SECONDS)
    webhook_id = request.headers.get("webhook-id")
    if webhook_id:
        arrivals[f"{path}:{webhook_id}"] = time.time()
    return web.Response(status=204)


async def stats(request: BaseRequest) -> web.StreamResponse:
    if request.method == "DELETE":
        arrivals.clear()
        return web.Response(status=204)
    return web.Response(body=json.dumps(arrivals).encode(), content_type="application/json")


def _shared(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(1024)
    return sock


async def serve(http_port: int, stats_port: int, https: tuple[int, str, str] | None) -> None:
    loop = asyncio.get_running_loop()
    receiver = web.Server(receive, access_log=None)
    await loop.create_server(receiver, sock=_shared(http_port))
    if https is not None:
        port, cert, key = https
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        await loop.create_server(receiver, sock=_shared(port), ssl=context)
    await loop.create_server(web.Server(stats, access_log=None), "127.0.0.1", stats_port)
    await asyncio.Event().wait()


def main() -> None:
    args = sys.argv[1:]
    https = (int(args[2]), args[3], args[4]) if len(args) == 5 else None
    asyncio.run(serve(int(args[0]), int(args[1]), https))


if __name__ == "__main__":
    main()
