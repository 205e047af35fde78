"""The event catalog: every event type Apex publishes, with its meaning and a sample payload."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

WILDCARD = "*"

_SAMPLE_LEAD: dict[str, Any] = {
    "id": "lead_sample",
    "email": "ada@example.com",
    "name": "Ada Lovelace",
    "company": "Analytical Engines",
    "identities": [
        {"kind": "email", "value": "ada@example.com"},
        {"kind": "hubspot", "value": "portal-62515:101"},
    ],
    "revenue": 12000,
    "currency": "usd",
    "conversions": 1,
    "firstTouch": {"source": "hubspot", "campaign": "spring-launch", "at": "2025-01-10T08:00:00Z"},
    "lastTouch": {"source": "stripe", "campaign": None, "at": "2025-01-12T09:30:00Z"},
    "createdAt": "2025-01-10T08:00:00Z",
    "updatedAt": "2025-01-12T09:30:00Z",
}


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    sample: dict[str, Any]


CATALOG: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("lead.created", "A new lead was identified from any source.", _SAMPLE_LEAD),
        EventType(
            "lead.updated",
            "A lead's data, identities or attribution changed (after a merge, with mergedLeadIds).",
            {**_SAMPLE_LEAD, "mergedLeadIds": ["lead_other"]},
        ),
        EventType(
            "experiment.started",
            "An experiment began collecting data.",
            {
                "experimentId": "exp_sample",
                "name": "Pricing page B",
                "startedAt": "2025-01-10T08:00:00Z",
            },
        ),
        EventType(
            "experiment.completed",
            "An experiment finished, with its result.",
            {"experimentId": "exp_sample", "name": "Pricing page B", "winner": "B", "uplift": 0.12},
        ),
        EventType(
            "goal.reached",
            "A goal's target was crossed (fires once per goal).",
            {
                "goalId": "goal_sample",
                "name": "Q1 revenue",
                "metric": "revenue",
                "target": 100000,
                "value": 100500,
                "source": None,
            },
        ),
        EventType(
            "connector.synced",
            "A source connector processed a batch of records.",
            {"connector": "hubspot", "records": 12, "leadsCreated": 3, "leadsUpdated": 9},
        ),
        EventType(
            "connector.error",
            "A source connector failed to process a batch for good.",
            {"connector": "stripe", "reason": "enrichment failed after 5 attempts"},
        ),
    )
}


def is_known(event_type: str) -> bool:
    return event_type in CATALOG


def wants(subscribed: list[str], event_type: str) -> bool:
    """True if a subscription to `subscribed` types receives `event_type`."""
    return WILDCARD in subscribed or event_type in subscribed
