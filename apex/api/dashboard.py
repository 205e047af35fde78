"""rq-dashboard mounted at /rq behind the API keys, with its deletes off and cross-site actions
refused.

A browser opens it with HTTP Basic (any username, an API key as the password) and then resends
those credentials on its own, to any request a page on another site makes it send. The
dashboard's actions are plain POSTs, plus `GET /rq/requeue/<queue>`, without CSRF tokens. So a
request that changes state must name this host as its Origin (or Referer); one that names no
page at all passes only with an `x-api-key` header, which no cross-site page can set.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import rq_dashboard
from flask import Flask, request
from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import Forbidden, Unauthorized

from apex.api.auth import authenticate, basic_password, presented_key
from apex.api.runtime import Runtime, runtime
from workers.jobs import QUEUES

PREFIX = "/rq"
REALM = "Apex"
BLUEPRINT = rq_dashboard.blueprint.name  # "rq_dashboard"

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The one GET that changes state: it requeues every failed job of a queue.
_STATE_CHANGING_GETS = frozenset({f"{BLUEPRINT}.requeue_all"})
# The views that list queues: before them, make sure every queue of ours is listed.
_QUEUE_LISTS = frozenset(
    {f"{BLUEPRINT}.queues_overview", f"{BLUEPRINT}.list_queues", f"{BLUEPRINT}.jobs_overview"}
)


def init_dashboard(app: Flask) -> None:
    """Mount rq-dashboard at /rq on `app` (created by create_app). Calling it again on the same
    app does nothing."""
    if BLUEPRINT in app.blueprints:
        return
    rt: Runtime = app.extensions["apex"]
    # setup_rq_connection reads the URL, so it must be set first.
    app.config["RQ_DASHBOARD_REDIS_URL"] = rt.settings.redis_url
    app.config["RQ_DASHBOARD_DISABLE_DELETE"] = True
    rq_dashboard.web.setup_rq_connection(app)
    # App-level, so it runs before the blueprint's own hooks and guards its static files too.
    app.before_request(guard_dashboard)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix=PREFIX)


def guard_dashboard() -> None:
    """A before_request hook for every path under /rq.

    Raises Unauthorized (401 with `WWW-Authenticate: Basic`) without a valid API key,
    TooManyRequestsError (429) for an address over its failure limit, and Forbidden (403) for a
    state-changing request that is not same-origin.
    """
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return
    rt = runtime()
    if not authenticate(presented_key() or basic_password()):
        raise Unauthorized(
            "The dashboard needs an API key: as the password of HTTP Basic (any username), "
            "or as x-api-key",
            # Werkzeug leaves a token-like realm unquoted; RFC 7235 2.2 wants it quoted.
            www_authenticate=WWWAuthenticate("basic", token=f'realm="{REALM}"'),
        )
    if _changes_state() and not _same_origin():
        raise Forbidden(
            "Cross-site request refused: a dashboard action must come from a page of this site"
        )
    if request.endpoint in _QUEUE_LISTS:
        _register_queues(rt.redis)


def _changes_state() -> bool:
    return request.method not in _SAFE_METHODS or request.endpoint in _STATE_CHANGING_GETS


def _same_origin() -> bool:
    """Whether the page that sent this request is on this host (Origin first, then Referer)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source:
        # Browsers name the page behind every cross-site POST; a request naming none is
        # trusted only with a header that a cross-site page cannot set.
        return bool(request.headers.get("x-api-key"))
    parts = urlsplit(source)  # "null" (an opaque origin) has no host and never matches
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()


def _register_queues(redis: Redis) -> None:
    """RQ lists a queue once something was enqueued on it; list ours from the start, so an
    operator sees every queue of the project, empty ones included."""
    try:
        redis.sadd(Queue.redis_queues_keys, *(Queue(name, connection=redis).key for name in QUEUES))
    except RedisError:
        pass  # the dashboard's own views report Redis being unreachable
