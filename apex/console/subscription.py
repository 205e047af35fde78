"""One subscription's page and actions, in the operator's console and through a portal link:
details and circuit, its last 24 hours drawn, the delivery log with every attempt, and test,
retry, recover (with the background job's progress), rotate, pause and resume."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, g, redirect, request
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from werkzeug.wrappers import Response

from apex import subscriptions
from apex.api.deliveries import INLINE_RECOVER_LIMIT
from apex.api.enqueue import enqueue_deliveries
from apex.api.runtime import runtime
from apex.catalog import CATALOG
from apex.console import charts, stats
from apex.console.web import Scope, portal_bp, render, sub_bp
from apex.db import utcnow
from apex.delivery import store
from apex.errors import ConflictError, FieldError, NotFoundError, ValidationFailedError
from apex.events import publish
from workers import jobs

PAGE_SIZE = 25
DELIVERY_FILTERS = {
    "": "All",
    "retrying": "Retrying (failed attempts, will try again)",
    "pending": "Pending",
    "in_flight": "In flight",
    "delivered": "Delivered",
    "failed": "Failed",
    "skipped": "Skipped",
    "cancelled": "Cancelled",
}
RETRYABLE = ("failed", "skipped", "delivered", "pending")
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_COLOURS = {
    "delivered": "s-ok",
    "retrying": "s-retry",
    "pending": "s-pending",
    "in_flight": "s-flight",
    "failed": "s-fail",
    "skipped": "s-skip",
    "cancelled": "s-cancel",
}


def _scope() -> Scope:
    scope: Scope = g.scope
    return scope


def _back(**notice: Any) -> Response:
    return redirect(_scope().url("page", **notice), 303)


def _invalid(field: str, message: str) -> ValidationFailedError:
    return ValidationFailedError(f"{field}: {message}", [FieldError(field, message)])


def page() -> Response:
    scope, rt, now = _scope(), runtime(), utcnow()
    sub = subscriptions.get(rt.engine, scope.sub_id)
    status = request.args.get("status", "")
    if status not in DELIVERY_FILTERS:
        raise _invalid("status", f"must be one of {', '.join(filter(None, DELIVERY_FILTERS))}")
    rows, next_cursor = store.page(
        rt.engine, sub.id, status or None, PAGE_SIZE, request.args.get("cursor") or None
    )
    hours = stats.hourly(rt.engine, sub.id, now)
    latency = stats.latency(rt.engine, sub.id, now)
    labels = [h.start.strftime("%H:00") for h in hours]
    volume = charts.stacked_columns(
        labels,
        [charts.Series(s, _COLOURS[s], [h.counts[s] for h in hours]) for s in stats.STATUSES],
    )
    durations = charts.lines(
        labels,
        [
            charts.Series("p50", "l-p50", [x.p50 for x in latency]),
            charts.Series("p90", "l-p90", [x.p90 for x in latency]),
            charts.Series("p99", "l-p99", [x.p99 for x in latency]),
        ],
    )
    return render(
        "console/subscription.html",
        sub=sub,
        activity=stats.activity(rt.engine, [sub.id], now)[sub.id],
        rows=rows,
        next_cursor=next_cursor,
        status=status,
        filters=DELIVERY_FILTERS,
        retryable=RETRYABLE,
        colours=_COLOURS,
        hours=hours,
        latency=latency,
        volume=volume,
        durations=durations,
        statuses=stats.STATUSES,
        catalog=CATALOG,
        since_default=(now - timedelta(hours=24)).strftime("%Y-%m-%dT%H:%M"),
        job_id=request.args.get("job", "")
        if _JOB_ID.fullmatch(request.args.get("job", ""))
        else "",
        notice=request.args.get("notice", ""),
        count=request.args.get("n", "", type=str)[:12],
    )


def send_test() -> Response:
    """Deliver the sample payload of an event type to this subscription only, now."""
    scope, rt = _scope(), runtime()
    subscriptions.get(rt.engine, scope.sub_id)
    event_type = request.form.get("event", "")
    if event_type not in CATALOG:
        raise _invalid("event", f"unknown event type {event_type[:100]!r}")
    published = publish(
        rt.engine, event_type, CATALOG[event_type].sample, only_subscription=scope.sub_id
    )
    enqueue_deliveries(published.pending)
    return _back(notice="tested", n=published.id)


def retry(delivery_id: str) -> Response:
    """Deliver one of this subscription's deliveries again now."""
    scope, rt = _scope(), runtime()
    if store.get_delivery_subscription(rt.engine, delivery_id) != scope.sub_id:
        raise NotFoundError(f"No delivery {delivery_id}")
    requeued = store.requeue(rt.engine, [delivery_id], utcnow(), include_delivered=True)
    if not requeued:
        raise ConflictError(f"Delivery {delivery_id} is in flight or cancelled; retry it later")
    enqueue_deliveries(requeued)
    return _back(notice="retried", n=delivery_id)


def _since(value: str) -> datetime:
    """A datetime-local field (or ISO 8601 with a zone), read as UTC."""
    try:
        since = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _invalid("since", f"not a date and time: {value[:40]!r}") from None
    return since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)


def recover() -> Response:
    """Redeliver every failed or skipped delivery created since the date given; a large batch
    runs as a background job, whose progress the page then shows."""
    scope, rt = _scope(), runtime()
    subscriptions.get(rt.engine, scope.sub_id)
    since = _since(request.form.get("since", ""))
    ids = store.recoverable(rt.engine, scope.sub_id, since)
    if len(ids) > INLINE_RECOVER_LIMIT:
        return _back(job=jobs.enqueue_recover(rt.redis, scope.sub_id, since))
    requeued = store.requeue(rt.engine, ids, utcnow())
    enqueue_deliveries(requeued)
    return _back(notice="recovered", n=len(requeued))


def rotate() -> Response:
    """A new secret, shown once; the previous one signs for the overlap period. Through a
    portal link this also ends the link (it is bound to the secret)."""
    scope, rt = _scope(), runtime()
    overlap = timedelta(seconds=rt.settings.rotation_overlap)
    sub, secret, expires = subscriptions.rotate_secret(rt.engine, rt.box, scope.sub_id, overlap)
    return render(
        "console/secret.html", sub=sub, secret=secret, rotated=True, previous_expires=expires
    )


def set_status() -> Response:
    """Pause or resume (a disabled subscription resumes with its failure record cleared)."""
    scope, rt = _scope(), runtime()
    status = request.form.get("status", "")
    if status not in ("active", "paused"):
        raise _invalid("status", "must be active or paused")
    subscriptions.update(rt.engine, scope.sub_id, {"status": status})
    return _back(notice="resumed" if status == "active" else "paused")


def job(job_id: str) -> Response:
    """The progress of this subscription's recover job, as a fragment the page polls."""
    scope, rt = _scope(), runtime()
    if not _JOB_ID.fullmatch(job_id):
        raise NotFoundError(f"No job {job_id[:100]!r}")
    try:
        found = Job.fetch(job_id, connection=rt.redis)
        args = found.args
        name = found.func_name
    except (NoSuchJobError, DeserializationError):
        raise NotFoundError(f"No job {job_id}") from None
    if name != "workers.jobs.recover" or not args or args[0] != scope.sub_id:
        raise NotFoundError(f"No job {job_id}")
    progress = found.meta.get("progress") if isinstance(found.meta, dict) else None
    status = str(found.get_status(refresh=False).value)
    return render(
        "console/job.html",
        job_id=job_id,
        status=status,
        progress=progress,
        result=found.return_value() if status == "finished" else None,
    )


def _register(blueprint: Blueprint) -> None:
    blueprint.add_url_rule("/", "page", page)
    blueprint.add_url_rule("/test", "test", send_test, methods=["POST"])
    blueprint.add_url_rule("/deliveries/<delivery_id>/retry", "retry", retry, methods=["POST"])
    blueprint.add_url_rule("/recover", "recover", recover, methods=["POST"])
    blueprint.add_url_rule("/rotate", "rotate", rotate, methods=["POST"])
    blueprint.add_url_rule("/status", "status", set_status, methods=["POST"])
    blueprint.add_url_rule("/jobs/<job_id>", "job", job)


_register(sub_bp)
_register(portal_bp)
