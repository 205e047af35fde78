"""Read routes for leads and attribution, and the goals routes."""

from __future__ import annotations

from typing import Any

from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.lead_schemas import (
    AttributionQuerySchema,
    AttributionSchema,
    ErasedSchema,
    GoalCreateSchema,
    GoalSchema,
    LeadPageSchema,
    LeadQuerySchema,
    LeadSchema,
)
from apex.api.runtime import runtime
from apex.api.schemas import DeletedSchema
from apex.db import utcnow
from apex.pipeline import attribution, erasure, goals, identity

leads_blp = Blueprint("leads", __name__, url_prefix="/api", description="Leads")
attribution_blp = Blueprint(
    "attribution", __name__, url_prefix="/api", description="Revenue attribution"
)
goals_blp = Blueprint("goals", __name__, url_prefix="/api", description="Goals")
for _blueprint in (leads_blp, attribution_blp, goals_blp):
    _blueprint.before_request(require_api_key)


@leads_blp.route("/leads", methods=["GET"])
@leads_blp.arguments(LeadQuerySchema, location="query")
@leads_blp.response(200, LeadPageSchema)
def list_leads(query: dict[str, Any]) -> dict[str, Any]:
    """Leads, newest first, optionally by email or first-touch source."""
    engine, limit, cursor = runtime().engine, query["limit"], query.get("cursor")
    found, cursor = identity.page(engine, query.get("email"), query.get("source"), limit, cursor)
    return {"data": [identity.lead_data(lead) for lead in found], "next_cursor": cursor}


@leads_blp.route("/leads/<lead_id>", methods=["GET"])
@leads_blp.response(200, LeadSchema)
def get_lead(lead_id: str) -> dict[str, Any]:
    """A lead; the id of a lead merged into another shows the one it was merged into."""
    return identity.lead_data(identity.get(runtime().engine, lead_id))


@leads_blp.route("/leads/<lead_id>", methods=["DELETE"])
@leads_blp.response(200, ErasedSchema)
def delete_lead(lead_id: str) -> dict[str, Any]:
    """Erase a person: the lead (or the one it was merged into), its identities, what sources
    said of them, its touchpoints and conversions, and the stored inbound payloads naming them
    (replaced by a tombstone). Events received later about them make a new lead."""
    erased = erasure.erase_lead(runtime().engine, lead_id, utcnow())
    return {
        "id": lead_id,
        "lead_id": erased.lead_id,
        "deleted": True,
        "merged_ids": list(erased.merged_ids),
        "removed": {
            "identities": erased.identities,
            "properties": erased.properties,
            "touchpoints": erased.touchpoints,
            "conversions": erased.conversions,
            "inbound_payloads": len(erased.inbound_event_ids),
        },
        "inbound_event_ids": list(erased.inbound_event_ids),
    }


@attribution_blp.route("/attribution", methods=["GET"])
@attribution_blp.arguments(AttributionQuerySchema, location="query")
@attribution_blp.response(200, AttributionSchema)
def get_attribution(query: dict[str, Any]) -> attribution.Report:
    """Revenue and conversions of a period by source and by campaign, under a model."""
    return attribution.report(
        runtime().engine, query["model"], query.get("start"), query.get("end")
    )


@goals_blp.route("/goals", methods=["POST"])
@goals_blp.arguments(GoalCreateSchema)
@goals_blp.response(201, GoalSchema)
def create_goal(body: dict[str, Any]) -> goals.Goal:
    """Create a goal; goal.reached fires once, when the pipeline sees the target crossed."""
    return goals.create(
        runtime().engine, body["name"], body["metric"], body["target"], body.get("source")
    )


@goals_blp.route("/goals", methods=["GET"])
@goals_blp.response(200, GoalSchema(many=True))
def list_goals() -> list[goals.Goal]:
    """Every goal with its progress."""
    return goals.list_all(runtime().engine)


@goals_blp.route("/goals/<goal_id>", methods=["GET"])
@goals_blp.response(200, GoalSchema)
def get_goal(goal_id: str) -> goals.Goal:
    return goals.get(runtime().engine, goal_id)


@goals_blp.route("/goals/<goal_id>", methods=["DELETE"])
@goals_blp.response(200, DeletedSchema)
def delete_goal(goal_id: str) -> dict[str, Any]:
    goals.delete(runtime().engine, goal_id)
    return {"id": goal_id, "deleted": True}
