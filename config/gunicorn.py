"""gunicorn settings for the web process (`gunicorn -c config/gunicorn.py "app:create_app()"`).

The settings are loaded here, in the master, before any worker is forked: a missing or malformed
one stops gunicorn itself with the one-line message (workers that fail to boot would only be
respawned forever). Threaded workers with read and write deadlines (config/deadline.py): a slow
client, sending or reading, holds one thread for at most APEX_CLIENT_TIMEOUT a request, never a
whole worker.
"""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from apex.redischeck import check_at_boot
from config.settings import SettingsError, load_settings

try:
    settings = load_settings()
except SettingsError as exc:
    raise SystemExit(f"web: {exc}") from None
# Here too, before any worker forks: an unfit Redis (evicting, unverified certificate, refused
# password) stops gunicorn with one line instead of workers failing to boot forever.
check_at_boot(settings.redis_url, "web")

bind = f"0.0.0.0:{settings.port}"
workers = settings.web_concurrency
threads = settings.web_threads
worker_class = "config.deadline.DeadlineWorker"
sendfile = False  # file bodies go through the worker's timed writes, like every other body
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
