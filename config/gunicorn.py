"""gunicorn settings for the web process (`gunicorn -c config/gunicorn.py "app:create_app()"`)."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any

bind = f"0.0.0.0:{os.environ.get('PORT', '5000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
graceful_timeout = 25  # inside Heroku's 30 s
control_socket_disable = True  # gunicorn's default socket path is shared machine-wide
accesslog = None  # apex.api.requestlog writes one line per request, with its id


def post_worker_init(worker: Any) -> None:
    """On SIGTERM, make /health answer 503 while in-flight requests finish."""
    from apex.api.health import shutting_down

    stop = worker.handle_exit

    def handle_exit(signum: int, frame: FrameType | None) -> None:
        shutting_down.set()
        stop(signum, frame)

    signal.signal(signal.SIGTERM, handle_exit)
