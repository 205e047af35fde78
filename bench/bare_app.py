"""The baseline server for bench.ingest: a bare Flask app whose one route answers 204 at once.

Served by gunicorn exactly as the real app is (`gunicorn bench.bare_app:app -w 2 -b …`), on the
same path, so the ratio in bench.ingest measures what the inbound route adds over Flask itself.
"""

from __future__ import annotations

from flask import Flask

app = Flask("bare")


@app.post("/api/webhooks/stripe")
def receive() -> tuple[str, int]:
    return "", 204
