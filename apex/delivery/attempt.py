"""One HTTP attempt: POST the signed body and describe what happened as an Outcome. Never raises
for anything the receiver or the network does."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import requests
from urllib3.util import Timeout

from apex.delivery.backoff import parse_retry_after
from apex.delivery.ssrf import post
from apex.errors import DestinationRefusedError, DestinationUnresolvedError

MAX_RESPONSE_BYTES = 1024
USER_AGENT = "Apex-Webhooks/1.0"


@dataclass(frozen=True)
class Outcome:
    """`status_code` is None when no response arrived; `error` then names what went wrong."""

    status_code: int | None
    error: str | None
    response_body: str | None
    duration_ms: int
    retry_after: float | None


def _read_truncated(response: requests.Response) -> str:
    chunk = b""
    for part in response.iter_content(chunk_size=MAX_RESPONSE_BYTES):
        chunk = part[:MAX_RESPONSE_BYTES]
        break
    # PostgreSQL text cannot hold NUL; a receiver's bytes must never break recording.
    return chunk.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def attempt(
    session: requests.Session,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    connect_timeout: float,
    total_timeout: float,
    now: datetime,
) -> Outcome:
    """POST once through `session` (built by ssrf.new_session); redirects are not followed."""
    started = time.monotonic()
    all_headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
    try:
        timeout = Timeout(connect=connect_timeout, read=total_timeout, total=total_timeout)
        response = post(session, url, body, all_headers, timeout)
    except (DestinationRefusedError, DestinationUnresolvedError) as exc:
        return Outcome(None, f"{exc.code}: {exc.detail}"[:500], None, _ms(started), None)
    except requests.Timeout:
        return Outcome(None, "timeout", None, _ms(started), None)
    except requests.ConnectionError as exc:
        return Outcome(None, f"connection_error: {type(exc).__name__}", None, _ms(started), None)
    except requests.RequestException as exc:
        return Outcome(None, f"request_error: {type(exc).__name__}", None, _ms(started), None)
    with response:
        try:
            text = _read_truncated(response)
        except requests.RequestException:
            text = ""
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    return Outcome(response.status_code, None, text, _ms(started), retry_after)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
