"""GET /api/jobs/<job_id>: a background job's status, times, result or error, and progress."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from marshmallow import Schema, fields
from rq.exceptions import DeserializationError, NoSuchJobError
from rq.job import Job
from rq.results import Result

from apex.api.auth import require_api_key
from apex.api.bodies import Blueprint
from apex.api.fields import Timestamp
from apex.api.runtime import runtime
from apex.errors import NotFoundError

blp = Blueprint("jobs", __name__, url_prefix="/api", description="Background jobs")
blp.before_request(require_api_key)

MAX_ERROR = 300  # characters of an error summary
_JOB_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")  # RQ refuses other ids with a ValueError
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]*@")  # user:password@ in a URL


class ProgressSchema(Schema):
    done = fields.Integer(metadata={"example": 1200})
    total = fields.Integer(metadata={"example": 5000})


class JobSchema(Schema):
    id = fields.String(metadata={"example": "9f1c2b7e-5d7a-4c4e-9a51-0d4b9b8f3e21"})
    queue = fields.String(metadata={"example": "maintenance"})
    function = fields.String(allow_none=True, metadata={"example": "workers.jobs.recover"})
    status = fields.String(
        metadata={
            "description": "RQ's status: queued, started, finished, failed, scheduled, "
            "deferred, stopped or canceled."
        }
    )
    enqueued_at = Timestamp(data_key="enqueuedAt", allow_none=True)
    started_at = Timestamp(data_key="startedAt", allow_none=True)
    ended_at = Timestamp(data_key="endedAt", allow_none=True)
    result = fields.Raw(
        allow_none=True, metadata={"description": "The return value of a finished job."}
    )
    error = fields.String(
        allow_none=True,
        metadata={
            "description": "The exception of a failed job, one line, without its traceback.",
            "example": "ValueError: subscription wh_2x9 has no deliveries",
        },
    )
    progress = fields.Nested(
        ProgressSchema,
        allow_none=True,
        metadata={"description": "Set by long jobs (recover, replay) as they go."},
    )


@dataclass(frozen=True)
class JobView:
    id: str
    queue: str
    function: str | None
    status: str
    enqueued_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    result: Any
    error: str | None
    progress: dict[str, int] | None


@blp.route("/jobs/<job_id>", methods=["GET"])
@blp.response(200, JobSchema)
@blp.alt_response(404, description="No such job, or its record has expired (not_found)")
def get_job(job_id: str) -> JobView:
    """A background job, e.g. the `jobId` a bulk recover answered with.

    Finished jobs are kept for a while only (RQ's result TTL); after that this answers 404.
    """
    if not _JOB_ID.fullmatch(job_id):
        raise NotFoundError(f"No job {job_id[:100]!r}: job ids are letters, digits, '_' and '-'")
    try:
        job = Job.fetch(job_id, connection=runtime().redis)
    except NoSuchJobError:
        raise NotFoundError(f"No job {job_id[:100]}") from None
    latest = job.latest_result()
    return JobView(
        id=job.id,
        queue=job.origin,
        function=_function(job),
        status=str(job.get_status(refresh=False).value),
        enqueued_at=job.enqueued_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        result=_plain(latest.return_value)
        if latest and latest.type == Result.Type.SUCCESSFUL
        else None,
        error=error_summary(latest.exc_string)
        if latest and latest.type == Result.Type.FAILED and latest.exc_string
        else None,
        progress=_progress(job.meta.get("progress")),
    )


def error_summary(traceback_text: str) -> str:
    """The final exception line of a formatted traceback (`ValueError: boom`), with URL
    credentials masked and cut to MAX_ERROR characters. The frames, which may show local
    values and paths, are never included."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    # The exception starts on the first line after the last indented frame line.
    start = 0
    for index, line in enumerate(lines):
        if line.startswith((" ", "\t")):
            start = index + 1
    summary = lines[start] if start < len(lines) else (lines[-1] if lines else "")
    summary = _CREDENTIALS.sub("***@", summary)
    return summary if len(summary) <= MAX_ERROR else summary[: MAX_ERROR - 1] + "…"


def _function(job: Job) -> str | None:
    try:
        return str(job.func_name)
    except DeserializationError:
        return None


def _plain(value: Any) -> Any:
    """`value` if it is JSON as it stands, else only its type's name."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return f"<{type(value).__name__}>"
    return value


def _progress(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    done, total = value.get("done"), value.get("total")
    if not isinstance(done, int) or not isinstance(total, int):
        return None
    return {"done": done, "total": total}
