"""Log lines: control characters escaped in the text format, so no message breaks its line."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from config.logging import JsonFormatter, TextFormatter, escape_controls, loggable


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/api/webhooks", "/api/webhooks"),
        ("/api/\n2026-01-01 INFO forged", "/api/\\n2026-01-01 INFO forged"),
        ("a\rb\tc", "a\\rb\\tc"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("nul\x00del\x7f", "nul\\x00del\\x7f"),
        ("c1\x85", "c1\\x85"),
        ("line\u2028sep\u2029", "line\\u2028sep\\u2029"),
        ("bidi\u202eoverride\u2066", "bidi\\u202eoverride\\u2066"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("café/ü/日本", "café/ü/日本"),
        ("back\\slash", "back\\slash"),
    ],
)
def test_escape_controls(text: str, escaped: str) -> None:
    assert escape_controls(text) == escaped


def test_loggable_also_doubles_backslashes_so_sent_text_cannot_pose_as_an_escape() -> None:
    assert loggable("/a\\nb") == "/a\\\\nb"
    assert loggable("/a\nb") == "/a\\nb"
    assert loggable("/a\\nb") != loggable("/a\nb")


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("apex.request", logging.INFO, __file__, 1, msg, args, None)


def test_the_text_format_keeps_each_record_on_one_line() -> None:
    line = TextFormatter("%(levelname)s %(name)s: %(message)s").format(
        _record("GET %s -> 404", "/x\nINFO apex.request: GET /admin -> 200")
    )

    assert line == "INFO apex.request: GET /x\\nINFO apex.request: GET /admin -> 200 -> 404"


def test_the_text_format_leaves_a_traceback_on_its_own_lines() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "apex", logging.ERROR, __file__, 1, "failed\n%s", ("x",), exc_info=sys.exc_info()
        )
    text = TextFormatter("%(message)s").format(record)

    first, *rest = text.splitlines()
    assert first == "failed\\nx"
    assert rest[0] == "Traceback (most recent call last):" and rest[-1] == "ValueError: boom"


def test_the_json_format_escapes_control_characters_itself() -> None:
    message = 'GET /x\n{"level": "error"}\u2028 -> 404'
    line = JsonFormatter().format(_record("%s", message))

    assert "\n" not in line and "\u2028" not in line
    assert json.loads(line)["msg"] == message
