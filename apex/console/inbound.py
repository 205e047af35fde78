"""Received inbound events by source and status, why one failed or was ignored, its stored
payload, and replaying it."""

from __future__ import annotations

import logging

from flask import redirect, request, url_for
from redis.exceptions import RedisError
from werkzeug.wrappers import Response

from apex.api.runtime import runtime
from apex.console.web import bp, render
from apex.db import utcnow
from apex.inbound import store
from apex.sources.registry import SOURCES
from workers.inbound import enqueue_inbound

log = logging.getLogger("apex.console")
PAGE_SIZE = 50


@bp.get("/inbound")
def inbound_list() -> Response:
    source = request.args.get("source", "")
    status = request.args.get("status", "")
    source = source if source in SOURCES else ""
    status = status if status in store.STATUSES else ""
    rows, next_cursor = store.page(
        runtime().engine,
        source or None,
        status or None,
        PAGE_SIZE,
        request.args.get("cursor") or None,
    )
    return render(
        "console/inbound.html",
        rows=rows,
        next_cursor=next_cursor,
        source=source,
        status=status,
        sources=sorted(SOURCES),
        statuses=store.STATUSES,
    )


@bp.get("/inbound/<event_id>")
def inbound_event(event_id: str) -> Response:
    return render(
        "console/inbound_event.html",
        event=store.get(runtime().engine, event_id),
        replayed=request.args.get("replayed") == "1",
    )


@bp.post("/inbound/<event_id>/replay")
def replay(event_id: str) -> Response:
    """Process the event again, whatever its status, with a fresh retry budget."""
    rt = runtime()
    store.replay(rt.engine, event_id, utcnow())
    try:
        enqueue_inbound(rt.redis, [event_id])
    except RedisError as exc:  # stored as queued: sweep_inbound enqueues it later
        log.warning("inbound %s: replay not enqueued (%s); the sweeper will", event_id, exc)
    return redirect(url_for("console.inbound_event", event_id=event_id, replayed=1), 303)
