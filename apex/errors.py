"""The ApexError family: every error the product reports, with its HTTP status and stable code."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class ApexError(Exception):
    """Base of every expected error. `code` is stable snake_case; `status` is the HTTP status."""

    status: int = 500
    code: str = "internal_error"

    def __init__(self, detail: str, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []


class BadRequestError(ApexError):
    status, code = 400, "bad_request"


class UnauthorizedError(ApexError):
    status, code = 401, "unauthorized"


class InvalidSignatureError(ApexError):
    status, code = 401, "invalid_signature"


class NotFoundError(ApexError):
    status, code = 404, "not_found"


class ConflictError(ApexError):
    status, code = 409, "conflict"


class PayloadTooLargeError(ApexError):
    status, code = 413, "payload_too_large"


class ValidationFailedError(ApexError):
    status, code = 422, "validation_failed"


class TooManyRequestsError(ApexError):
    """Too many failed attempts from one client; `retry_after` is in whole seconds."""

    status, code = 429, "too_many_requests"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class SourceNotConfiguredError(ApexError):
    status, code = 503, "source_not_configured"


class DestinationUnresolvedError(ApexError):
    """A delivery URL's host name does not resolve (DNS), as opposed to being refused."""

    status, code = 422, "destination_unresolved"


class DestinationRefusedError(ApexError):
    """A delivery URL resolves to an address we never connect to (SSRF guard)."""

    status, code = 422, "destination_refused"
