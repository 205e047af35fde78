"""Leads: search by email, one lead's identities, touchpoints, payments and merges; attribution
by source and campaign under the three models, drawn."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from flask import request
from werkzeug.wrappers import Response

from apex.api.runtime import runtime
from apex.console import charts
from apex.console.lead_records import history
from apex.console.money import major
from apex.console.web import bp, render
from apex.errors import FieldError, ValidationFailedError
from apex.pipeline import attribution, identity

PAGE_SIZE = 50
_MODEL_COLOURS = {"first_touch": "m-first", "last_touch": "m-last", "linear": "m-linear"}


@bp.get("/leads")
def leads_list() -> Response:
    email = request.args.get("email", "").strip()[:320]
    found, next_cursor = identity.page(
        runtime().engine, email or None, None, PAGE_SIZE, request.args.get("cursor") or None
    )
    return render("console/leads.html", leads=found, email=email, next_cursor=next_cursor)


@bp.get("/leads/<lead_id>")
def lead(lead_id: str) -> Response:
    engine = runtime().engine
    found = identity.get(engine, lead_id)
    return render("console/lead.html", lead=found, asked=lead_id, history=history(engine, found.id))


def _day(name: str) -> datetime | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    except ValueError:
        message = f"not a date (YYYY-MM-DD): {value[:40]!r}"
        raise ValidationFailedError(f"{name}: {message}", [FieldError(name, message)]) from None


@bp.get("/attribution")
def attribution_page() -> Response:
    """Revenue and conversions by source and by campaign under each model, for [start, end)."""
    start, end = _day("start"), _day("end")
    engine = runtime().engine
    reports = {m: attribution.report(engine, m, start, end) for m in attribution.MODELS}
    # rows[(source, currency)][model] -> Credit; the same by (source, campaign, currency).
    by_source: dict[tuple[str, str], dict[str, attribution.Credit]] = defaultdict(dict)
    by_campaign: dict[tuple[str, str, str], dict[str, attribution.Credit]] = defaultdict(dict)
    for model, report in reports.items():
        for credit in report.by_source:
            by_source[(credit.source or "(none)", credit.currency)][model] = credit
        for credit in report.by_campaign:
            key = (credit.source or "(none)", credit.campaign or "(none)", credit.currency)
            by_campaign[key][model] = credit
    source_rows = sorted(by_source.items(), key=lambda kv: (kv[0][1], kv[0][0]))
    campaign_rows = sorted(by_campaign.items())
    drawn = {}
    for currency in sorted({cur for (_, cur) in by_source}):
        rows = [(src, cells) for (src, cur), cells in source_rows if cur == currency]
        drawn[currency] = charts.grouped_bars(
            [src for src, _ in rows],
            [
                charts.Series(
                    model.replace("_", " "),
                    _MODEL_COLOURS[model],
                    [
                        major(cells[model].revenue, currency) if model in cells else 0
                        for _, cells in rows
                    ],
                )
                for model in attribution.MODELS
            ],
        )
    return render(
        "console/attribution.html",
        models=attribution.MODELS,
        source_rows=source_rows,
        campaign_rows=campaign_rows,
        drawn=drawn,
        start=request.args.get("start", "")[:10],
        end=request.args.get("end", "")[:10],
    )
