"""A fast local webhook receiver for benchmarks: keep-alive HTTP/1.1, one thread per connection.

POST /ok answers 204 at once; POST /hang sleeps `HANG_SECONDS` first. Every request's arrival
time is kept by its webhook-id; GET /stats returns them as JSON.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_SECONDS = 20.0
arrivals: dict[str, float] = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        if self.path.startswith("/hang"):
            time.sleep(HANG_SECONDS)
        webhook_id = self.headers.get("webhook-id")
        if webhook_id:
            with lock:
                arrivals[f"{self.path}:{webhook_id}"] = time.time()
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        with lock:
            body = json.dumps(arrivals).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self) -> None:
        with lock:
            arrivals.clear()
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
