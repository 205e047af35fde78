"""The framework-free view of an incoming HTTP request and the verified event it yields."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RawRequest:
    """What a verifier sees: method, the public URL the sender signed, headers, raw body bytes.

    `headers` keys are lower-cased.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class InboundEvent:
    """One verified event. `dedupe_key` is unique per source; `payload` is the parsed JSON.

    `ignored` is the reason when the verifier already knows Apex cannot use the event (say, a
    HubSpot batch element of a shape it does not read): it is stored `ignored`, not processed.
    """

    source: str
    dedupe_key: str
    type: str
    payload: object
    headers: Mapping[str, str] = field(default_factory=dict)
    ignored: str | None = None
