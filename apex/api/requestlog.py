"""One log line per request, with a request id (X-Request-ID, or a new one) that is echoed back.
Never logs bodies, query strings or headers (they may carry secrets or signatures). What the
client chose (method, path) is logged escaped, so it cannot start a line of its own."""

from __future__ import annotations

import logging
import re
import time

from flask import Flask, Response, g, request

from apex.ids import new_id
from config.logging import loggable

log = logging.getLogger("apex.request")
_VALID_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _start() -> None:
    given = request.headers.get("X-Request-ID", "")
    g.request_id = given if _VALID_ID.fullmatch(given) else new_id("req")
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    response.headers["X-Request-ID"] = g.get("request_id", "")
    elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
    log.info(
        "%s %s -> %d in %.1f ms request_id=%s",
        loggable(request.method),
        loggable(request.path),
        response.status_code,
        elapsed,
        g.get("request_id", ""),
    )
    return response


def init_request_log(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
