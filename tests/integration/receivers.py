"""Subscriber-side helpers for tests: a scripted local receiver and the API calls around it."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask.testing import FlaskClient
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response


class Receiver:
    """Records every request to one path and answers from a script of responses."""

    def __init__(self, server: HTTPServer, path: str, script: list[Response] | None = None) -> None:
        self.requests: list[tuple[float, dict[str, str], bytes]] = []
        self.script = list(script or [])
        self.lock = threading.Lock()
        self.url = server.url_for(path)
        server.expect_request(path, method="POST").respond_with_handler(self.handle)

    def handle(self, request: Request) -> Response:
        with self.lock:
            self.requests.append((time.monotonic(), dict(request.headers), request.get_data()))
            if self.script:
                return self.script.pop(0)
        return Response("ok", status=200)


def subscribe(
    client: FlaskClient, auth: dict[str, str], url: str, events: list[str]
) -> dict[str, Any]:
    response = client.post("/api/webhooks", json={"url": url, "events": events}, headers=auth)
    assert response.status_code == 201, response.json
    return dict(response.json)


def publish(
    client: FlaskClient, auth: dict[str, str], event_type: str, **extra: Any
) -> dict[str, Any]:
    body = {"type": event_type, "data": {"n": 1}, **extra}
    response = client.post("/api/events", json=body, headers=auth)
    assert response.status_code == 202, response.json
    return dict(response.json)


def deliveries(client: FlaskClient, auth: dict[str, str], sub_id: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/webhooks/{sub_id}/deliveries", headers=auth)
    assert response.status_code == 200
    return list(response.json["data"])
