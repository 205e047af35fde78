"""The inbound sources we accept, each with the function that verifies its requests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType

from apex.inbound import github, hubspot, stripe
from apex.inbound.request import InboundEvent, RawRequest

Verifier = Callable[[RawRequest, Sequence[str], float], list[InboundEvent]]
"""verify(request, secrets, now): the request's events, or an ApexError saying why not."""

VERIFIERS: Mapping[str, Verifier] = MappingProxyType(
    {
        stripe.SOURCE: stripe.verify,
        github.SOURCE: github.verify,
        hubspot.SOURCE: hubspot.verify,
    }
)
