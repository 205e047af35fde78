"""The request log through the real app and the real log setup: a path a client chose (%0A,
%0D, ESC, bidi overrides) cannot forge a line of its own, in the text and the JSON format."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask, g

from config import Settings
from config.logging import configure_logging

FORGED = "2026-12-01 10:00:00,000 INFO apex.request: GET /api/webhooks -> 200"
PATHS = [
    "/api/%0A" + FORGED.replace(" ", "%20"),
    "/api/%0D%0A" + FORGED.replace(" ", "%20"),
    "/api/%1B%5B2K%0D" + FORGED.replace(" ", "%20"),  # ESC[2K: a terminal erases the line
    "/api/%E2%80%A8" + FORGED.replace(" ", "%20"),  # U+2028, a line separator to some viewers
    "/api/%E2%80%AEnimda",  # U+202E: shows as "admin" reversed
]


@pytest.fixture
def real_logging() -> Iterator[None]:
    """Let configure_logging install its handler on the root logger, then put pytest's back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _request_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "apex.request" in line]


@pytest.mark.parametrize("path", PATHS)
def test_a_path_cannot_forge_a_text_log_line(
    app: Flask,
    settings: Settings,
    path: str,
    real_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(replace(settings, log_format="text"))

    response = app.test_client().get(path)

    err = capsys.readouterr().err
    assert response.status_code == 404
    lines = err.splitlines()
    assert len(lines) == 1, lines
    assert "\r" not in err and "\x1b" not in err and "\u2028" not in err and "\u202e" not in err
    assert not any(line.startswith(FORGED) for line in lines)
    assert " INFO apex.request: GET /api/\\" in lines[0] and " -> 404 in " in lines[0]


@pytest.mark.parametrize("path", PATHS)
def test_a_path_cannot_forge_a_json_log_line(
    app: Flask,
    settings: Settings,
    path: str,
    real_logging: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(replace(settings, log_format="json"))

    app.test_client().get(path)

    lines = capsys.readouterr().err.splitlines()
    records = [json.loads(line) for line in lines]  # every line is one whole JSON record
    assert [r["logger"] for r in records] == ["apex.request"]
    assert records[0]["msg"].startswith("GET /api/\\")
    assert "\n" not in records[0]["msg"] and "\u202e" not in records[0]["msg"]


@pytest.mark.parametrize("given", ["req_1\n", "req 1", "req_1\r\nINFO forged", "x" * 129])
def test_a_request_id_that_is_not_a_plain_token_is_replaced(app: Flask, given: str) -> None:
    with app.test_request_context("/health", environ_overrides={"HTTP_X_REQUEST_ID": given}):
        app.preprocess_request()
        assert g.request_id != given and g.request_id.startswith("req_")


def test_a_plain_request_id_is_kept_and_echoed(app: Flask) -> None:
    response = app.test_client().get("/health", headers={"X-Request-ID": "trace-42.a_b"})

    assert response.headers["X-Request-ID"] == "trace-42.a_b"
