"""`python -m launcher.receiver [PORT]`: a webhook receiver for trying Apex locally. Prints each
delivery's Standard Webhooks headers and body, and answers 204."""

from __future__ import annotations

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Echo(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            print(f"{name}: {self.headers.get(name)}")
        print(body.decode("utf-8", errors="replace"), end="\n\n", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 5077
    print(f"receiving on http://127.0.0.1:{port}/", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Echo).serve_forever()


if __name__ == "__main__":
    main()
