"""Request bodies: a body the server cannot read (bad chunked framing, a client gone mid-body) is a
400, and the management API reads JSON within limits (1 MiB, 32 levels, 1,000-character numbers)
and parses it strictly before its schemas see it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import flask
import flask_smorest
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest, HTTPException

from apex import jsonlimits
from apex.errors import FieldError, NotFoundError, PayloadTooLargeError, ValidationFailedError

MAX_MANAGEMENT_BODY = 1024 * 1024
"""Bytes of a management API body (JSON), by Content-Length or, chunked, as read."""

_READ_CHUNK = 64 * 1024


class _GuardedInput:
    """wsgi.input whose read errors become a 400: gunicorn raises its own parse errors (e.g.
    InvalidChunkSize) from a body read, which would otherwise reach the catch-all 500."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.read, -1 if size is None else size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.readline, -1 if size is None else size)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return self._call(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    @staticmethod
    def _call(read: Callable[[int], Any], arg: int) -> Any:
        try:
            return read(arg)
        except HTTPException:
            raise
        except Exception as exc:  # whatever the server's reader raises is a body it cannot read
            raise BadRequest(f"Malformed request body ({type(exc).__name__})") from None


def guard_input(wsgi_app: WSGIApplication) -> WSGIApplication:
    """WSGI middleware: wrap wsgi.input so a body the server cannot read answers 400."""

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ["wsgi.input"] = _GuardedInput(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    return app


def read_body(limit: int) -> bytes:
    """The raw request body, refused with PayloadTooLargeError past `limit` bytes: at once by
    Content-Length, or, for a chunked body, one byte past the limit (never read whole)."""
    request = flask.request
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLargeError(f"Body is {length} bytes; the limit is {limit}")
    body = bytearray()
    while len(body) <= limit:
        chunk = request.stream.read(min(_READ_CHUNK, limit + 1 - len(body)))
        if not chunk:
            break
        body += chunk
    if len(body) > limit:
        raise PayloadTooLargeError(f"Body is over the limit of {limit} bytes")
    return bytes(body)


class StrictJsonParser(FlaskParser):
    """webargs' parser with JSON bodies read by read_body() and parsed by jsonlimits.parse():
    over 1 MiB is 413; deep nesting, long numbers, NaN, Infinity or malformed JSON are 400."""

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not core.is_json(req.mimetype):
            return core.missing
        body = read_body(MAX_MANAGEMENT_BODY)
        if not body.strip():
            return core.missing  # an empty body: the schema reports its required fields
        return jsonlimits.parse(body)


def _refuse_nul() -> None:
    """A NUL in the path names nothing (404); in the query string it is a 422 on that field."""
    request = flask.request
    if "\x00" in request.path:
        raise NotFoundError("No such resource: the path holds a NUL character")
    for name, value in request.args.items(multi=True):
        if "\x00" in name or "\x00" in value:
            field = name.replace("\x00", "\\x00")
            raise ValidationFailedError(
                f"{field}: must not contain NUL", [FieldError(field, "must not contain NUL")]
            )


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict JSON parser, refusing NUL in paths and queries
    before any other hook; every API blueprint uses it."""

    ARGUMENTS_PARSER = StrictJsonParser()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_request(_refuse_nul)
