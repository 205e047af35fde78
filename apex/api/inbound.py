"""Incoming webhooks: POST /api/webhooks/<source> (signed, no API key) and the operator routes."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import request
from redis.exceptions import RedisError
from werkzeug.exceptions import HTTPException

from apex import metrics
from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint, read_body
from apex.api.inbound_schemas import (
    InboundEventDetailSchema,
    InboundPageSchema,
    InboundQuerySchema,
    ReceivedSchema,
    ReplayedSchema,
)
from apex.api.runtime import runtime
from apex.db import utcnow
from apex.errors import ApexError, NotFoundError
from apex.inbound import store
from apex.sources.registry import SOURCES
from apex.sources.request import RawRequest
from workers.inbound import enqueue_inbound

log = logging.getLogger("apex.api.inbound")

blp = Blueprint(
    "inbound",
    __name__,
    url_prefix="/api",
    description="Incoming webhooks from Stripe, GitHub and HubSpot, verified by their signatures",
)
operator_blp = Blueprint(
    "inbound_operator", __name__, url_prefix="/api", description="Received inbound events"
)
operator_blp.before_request(require_api_key)


# --- the platforms' door --------------------------------------------------------------------


@blp.route("/webhooks/<source>", methods=["POST"])
@blp.doc(security=[])
@blp.response(202, ReceivedSchema, description="Verified and stored; processed in the background")
@blp.alt_response(200, schema=ReceivedSchema, description="Every event was already received")
@blp.alt_response(400, description="Verified, but not the JSON the source sends (bad_request)")
@blp.alt_response(401, description="Bad or missing signature, or stale timestamp")
@blp.alt_response(404, description="Unknown source (not_found)")
@blp.alt_response(413, description="Body over APEX_MAX_INBOUND_BODY (payload_too_large)")
@blp.alt_response(503, description="No secret configured for the source")
def receive_webhook(source: str) -> tuple[dict[str, Any], int]:
    """Receive a delivery from `stripe`, `github` or `hubspot`.

    The raw body is verified with the platform's own scheme, stored, and queued for processing
    before the answer; a delivery seen before answers 200 with `duplicate`.
    """
    label = source if source in SOURCES else "unknown"
    try:
        answer = _receive(source)
    except (ApexError, HTTPException) as exc:
        status = exc.status if isinstance(exc, ApexError) else exc.code
        code = exc.code if isinstance(exc, ApexError) else exc.name
        detail = exc.detail if isinstance(exc, ApexError) else exc.description
        log.info("inbound %s: refused %s %s (%s)", _loggable(source), status, code, detail)
        metrics.record_inbound(label, exc.code if isinstance(exc, ApexError) else f"http_{status}")
        raise
    metrics.record_inbound(label, "duplicate" if answer[1] == 200 else "accepted")
    return answer


def _receive(source: str) -> tuple[dict[str, Any], int]:
    known = SOURCES.get(source)
    if known is None:
        expected = ", ".join(sorted(SOURCES))
        raise NotFoundError(f"Unknown webhook source {source[:40]!r}; expected one of {expected}")
    rt = runtime()
    body = read_body(rt.settings.max_inbound_body)
    raw = RawRequest(
        method=request.method,
        url=_signed_url(rt.settings.public_url),
        headers={name.lower(): value for name, value in request.headers.items()},
        body=body,
    )
    legacy = rt.settings.legacy_signatures(source)  # replayable schemes, off unless allowed
    verify = known.verify_legacy if legacy and known.verify_legacy else known.verify
    events = verify(raw, rt.settings.inbound_secrets(source), time.time())
    received = rt.receiver.receive(events, utcnow())
    if received.duplicate:
        log.info("inbound %s: duplicate of %d known event(s)", source, len(events))
        return {"received": True, "duplicate": True}, 200
    first = received.new_ids[0] if received.new_ids else None
    log.info(
        "inbound %s: accepted %s (%s), %d known; %s",
        source,
        ", ".join(received.new_ids) or "no events",
        ", ".join(sorted({event.type for event in events})) or "-",
        len(events) - len(received.new_ids),
        _enqueue(received.queued_ids),
    )
    return {"received": True, "id": first}, 202


def _signed_url(public_url: str | None) -> str:
    """The URL the sender called, as HubSpot signs it: APEX_PUBLIC_URL, or the scheme and host
    the proxy forwarded (ProxyFix), then the path and the query string exactly as sent."""
    query = request.query_string.decode("utf-8", "replace")
    target = request.path + (f"?{query}" if query else "")
    if public_url:
        return public_url + target
    return request.host_url.rstrip("/") + request.script_root + target


def _enqueue(event_ids: list[str]) -> str:
    """Enqueue stored events; Redis being down delays them (sweep_inbound), never loses them."""
    try:
        enqueue_inbound(runtime().redis, event_ids)
    except RedisError as exc:
        return f"not enqueued ({type(exc).__name__}: {exc}); the sweeper will"
    return "enqueued"


def _loggable(source: str) -> str:
    return source if source in SOURCES else repr(source[:40])


# --- the operator's view --------------------------------------------------------------------


@operator_blp.route("/inbound", methods=["GET"])
@operator_blp.arguments(InboundQuerySchema, location="query")
@operator_blp.response(200, InboundPageSchema)
def list_inbound(query: dict[str, Any]) -> dict[str, Any]:
    """Received events, newest first, with status (queued, processed, ignored, failed), the
    last error, and why an ignored event was ignored."""
    rows, cursor = store.page(
        runtime().engine,
        query.get("source"),
        query.get("status"),
        query["limit"],
        query.get("cursor"),
    )
    return {"data": rows, "next_cursor": cursor}


@operator_blp.route("/inbound/<event_id>", methods=["GET"])
@operator_blp.response(200, InboundEventDetailSchema)
def get_inbound(event_id: str) -> store.StoredEvent:
    """One received event with its payload and the headers kept from the delivery."""
    return store.get(runtime().engine, event_id)


@operator_blp.route("/inbound/<event_id>/replay", methods=["POST"])
@operator_blp.response(202, ReplayedSchema)
def replay_inbound(event_id: str) -> dict[str, Any]:
    """Process an event again, whatever its status, with a fresh retry budget."""
    store.replay(runtime().engine, event_id, utcnow())
    log.info("inbound %s: replay requested; %s", event_id, _enqueue([event_id]))
    return {"id": event_id, "status": "queued"}
