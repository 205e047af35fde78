"""The operator's subscription pages: the list with its last 24 hours, create, edit, delete."""

from __future__ import annotations

from flask import redirect, request, url_for
from werkzeug.wrappers import Response

from apex import subscriptions
from apex.api.runtime import runtime
from apex.api.schemas import SubscriptionCreateSchema, SubscriptionUpdateSchema
from apex.catalog import CATALOG, WILDCARD
from apex.console import stats
from apex.console.forms import load, subscription_fields
from apex.console.web import bp, render
from apex.db import utcnow

FILTERS = {
    "": "All",
    "active": "Active",
    "paused": "Paused",
    "disabled": "Disabled",
    "circuit_open": "Circuit open",
}


def _matches(sub: subscriptions.Subscription, status: str, query: str) -> bool:
    if status == "circuit_open" and sub.health.circuit != "open":
        return False
    if status in subscriptions.STATUSES and sub.status != status:
        return False
    text = f"{sub.id} {sub.url} {sub.description} {' '.join(sub.events)}".lower()
    return query in text


@bp.get("/webhooks", endpoint="subscriptions")
def subscriptions_list() -> Response:
    rt = runtime()
    status = request.args.get("status", "")
    status = status if status in FILTERS else ""
    query = request.args.get("q", "").strip().lower()[:200]
    found = [s for s in subscriptions.list_all(rt.engine) if _matches(s, status, query)]
    activity = stats.activity(rt.engine, [s.id for s in found], utcnow())
    return render(
        "console/subscriptions.html",
        subs=found,
        activity=activity,
        status=status,
        query=request.args.get("q", "")[:200],
        filters=FILTERS,
    )


def _form_context() -> dict[str, object]:
    return {"catalog": CATALOG, "wildcard": WILDCARD}


@bp.route("/webhooks/new", methods=["GET", "POST"])
def create() -> Response:
    data: dict[str, object] = {"url": "", "events": [], "description": ""}
    errors: dict[str, str] = {}
    if request.method == "POST":
        data = subscription_fields(partial=False)
        body, errors = load(SubscriptionCreateSchema(), data)
        if body is not None:
            rt = runtime()
            sub, secret = subscriptions.create(rt.engine, rt.box, **body)
            return render("console/secret.html", sub=sub, secret=secret, rotated=False)
    return render(
        "console/subscription_form.html",
        422 if errors else 200,
        data=data,
        errors=errors,
        sub=None,
        **_form_context(),
    )


@bp.route("/webhooks/<sub_id>/edit", methods=["GET", "POST"])
def edit(sub_id: str) -> Response:
    rt = runtime()
    sub = subscriptions.get(rt.engine, sub_id)
    data: dict[str, object] = {
        "url": sub.url,
        "events": sub.events,
        "description": sub.description,
        "rateLimit": sub.rate_limit,
        "concurrency": sub.concurrency,
    }
    errors: dict[str, str] = {}
    if request.method == "POST":
        data = subscription_fields(partial=True)
        body, errors = load(SubscriptionUpdateSchema(), data)
        if body is not None:
            subscriptions.update(rt.engine, sub_id, body)
            return redirect(url_for("console.sub.page", sub_id=sub_id, notice="saved"), 303)
    return render(
        "console/subscription_form.html",
        422 if errors else 200,
        data=data,
        errors=errors,
        sub=sub,
        **_form_context(),
    )


@bp.route("/webhooks/<sub_id>/delete", methods=["GET", "POST"])
def delete(sub_id: str) -> Response:
    """GET asks for confirmation; POST deletes (its pending deliveries are cancelled)."""
    rt = runtime()
    sub = subscriptions.get(rt.engine, sub_id)
    if request.method == "POST":
        cancelled = subscriptions.delete(rt.engine, sub_id)
        return redirect(
            url_for("console.subscriptions", deleted=sub_id, cancelled=len(cancelled)), 303
        )
    return render("console/delete.html", sub=sub)
