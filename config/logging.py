"""Log setup: one line per event, JSON in production (APEX_LOG_FORMAT=json), text in development.

A message cannot break its line: JSON escapes control characters itself, and the text format
escapes them (a URL path with %0A would otherwise forge a log line of its own).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import unicodedata
from datetime import UTC, datetime

from config.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Characters worth a second look: ASCII and Latin-1 controls, a backslash, anything non-ASCII.
_SUSPECT = re.compile(r"[\x00-\x1f\x7f-\x9f]|[^\x00-\x7f]")
_SUSPECT_OR_BACKSLASH = re.compile(r"[\x00-\x1f\x7f-\x9f\\]|[^\x00-\x7f]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# Controls, format characters (bidi overrides, zero-width marks), line and paragraph separators.
_UNPRINTABLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char in _SHORT:
        return _SHORT[char]
    if char.isascii() or unicodedata.category(char) in _UNPRINTABLE:
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return char


def escape_controls(text: str) -> str:
    """`text` with every control, format or line-separator character escaped (\\n, \\x1b,
    \\u202e); printable text, non-ASCII letters included, unchanged."""
    return _SUSPECT.sub(_escape, text)


def loggable(text: str) -> str:
    """Client-controlled `text` (a URL path, a header) for a log line: escape_controls, and a
    backslash doubled, so that an escaped newline and a sent backslash-n never look alike."""
    return _SUSPECT_OR_BACKSLASH.sub(_escape, text)


class TextFormatter(logging.Formatter):
    """The development format, each record's line with its control characters escaped; a
    traceback still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
