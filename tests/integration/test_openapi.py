"""The OpenAPI document: no ambiguous paths, the errors each operation can answer, and the
constraints that let a client (or schemathesis) generate only requests the API accepts."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

METHODS = ("get", "post", "patch", "put", "delete")


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, item[method])
        for path, item in spec["paths"].items()
        for method in METHODS
        if method in item
    ]


def test_no_two_templated_paths_have_the_same_shape(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    shapes = [re.sub(r"\{[^}]+\}", "{}", path) for path in spec["paths"]]
    assert len(shapes) == len(set(shapes)), sorted(shapes)
    assert {"/api/webhooks/stripe", "/api/webhooks/github", "/api/webhooks/hubspot"} <= set(
        spec["paths"]
    )


def test_every_operation_documents_the_errors_it_can_answer(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    for path, method, operation in operations(spec):
        codes = set(operation["responses"])
        if operation.get("security") != []:  # the API-key routes
            assert {"401", "429", "503"} <= codes, (method, path)
        if "{" in path:
            assert "404" in codes, (method, path)
        if "requestBody" in operation:
            assert {"400", "413", "422"} <= codes, (method, path)
    assert "409" in spec["paths"]["/api/events"]["post"]["responses"]


def test_request_schemas_state_what_the_validators_accept(client: FlaskClient) -> None:
    spec = client.get("/api/openapi.json").json
    schemas = spec["components"]["schemas"]
    create = schemas["SubscriptionCreate"]["properties"]
    assert create["events"]["minItems"] == 1
    assert "lead.created" in create["events"]["items"]["enum"]
    assert "*" in create["events"]["items"]["enum"]
    assert create["url"]["pattern"].startswith("^")
    assert schemas["SubscriptionUpdate"]["minProperties"] == 1
    assert "lead.created" in schemas["Publish"]["properties"]["type"]["enum"]
    assert schemas["Publish"]["properties"]["data"]["type"] == "object"
    since = schemas["Recover"]["properties"]["since"]["oneOf"]
    assert {"type": "string", "format": "date-time"} in since
    assert schemas["GoalCreate"]["properties"]["target"]["maximum"] == 2**63 - 1
    webhook = spec["paths"]["/api/webhooks/{sub_id}"]
    assert webhook["patch"]["requestBody"]["required"] is True
    rotate = spec["paths"]["/api/webhooks/{sub_id}/rotate-secret"]["post"]
    assert rotate["requestBody"].get("required", False) is False
