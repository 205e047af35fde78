"""POST /api/webhooks/<id>/portal-link: a signed link to one subscription's page for its
integrator (see apex.console.links)."""

from __future__ import annotations

from typing import Any

from flask import request, url_for
from marshmallow import Schema, fields, validate

from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.fields import Timestamp
from apex.api.runtime import runtime
from apex.console.links import DEFAULT_TTL, MAX_TTL, issue
from apex.db import utcnow
from apex.errors import NotFoundError

blp = Blueprint("portal_links", __name__, url_prefix="/api", description="Portal links")
blp.before_request(require_api_key)


class PortalLinkRequestSchema(Schema):
    ttl = fields.Integer(
        strict=True,
        load_default=DEFAULT_TTL,
        validate=validate.Range(min=60, max=MAX_TTL),
        metadata={"description": "Seconds the link stays valid: 60 to 604800 (7 days); "
                  "default 3600.", "example": 86400},
    )  # fmt: skip


class PortalLinkSchema(Schema):
    url = fields.String(
        metadata={
            "description": "Opens this subscription's page, delivery log, test, retry, recover, "
            "rotate and pause, and nothing else. Anyone holding it can use it: send it privately.",
            "example": "https://apex.example.com/portal/eyJzIjoid2hfMng5In0.sig/",
        }
    )
    expires_at = Timestamp(data_key="expiresAt")


@blp.route("/webhooks/<sub_id>/portal-link", methods=["POST"])
@blp.arguments(PortalLinkRequestSchema, required=False)
@blp.response(201, PortalLinkSchema)
def create_portal_link(body: dict[str, Any], sub_id: str) -> dict[str, Any]:
    """Issue a portal link for an integrator. It is revoked by rotating the subscription's
    secret (or APEX_SECRET_KEY), and by deleting the subscription."""
    rt = runtime()
    try:
        link = issue(rt.engine, rt.settings.secret_key, sub_id, body["ttl"], utcnow())
    except LookupError:
        raise NotFoundError(f"No webhook {sub_id}") from None
    path = url_for("portal.page", token=link.token)
    base = rt.settings.public_url or request.host_url.rstrip("/")
    return {"url": base + path, "expires_at": link.expires_at}
