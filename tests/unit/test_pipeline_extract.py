"""extract(): what all sources share (unknown sources, emails); each source's records are in
test_stripe_extract.py, test_github_extract.py and test_hubspot_extract.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from apex.pipeline.extract import extract
from apex.pipeline.records import (
    Identity,
    normalise_email,
)

RECEIVED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
PORTAL = 48120977
JANE_HS = Identity("hubspot", "portal-48120977:90210554101")
JANE_EMAIL = Identity("email", "jane.doe@acme.io")


def ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, UTC)


def unix(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


# HubSpot's are in test_hubspot_extract.py.


def test_rejects_an_unknown_source() -> None:
    with pytest.raises(ValueError, match="unknown inbound source"):
        extract("gitlab", "push", {}, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" Jane.Doe@ACME.io ", "jane.doe@acme.io"),
        ("not-an-email", None),
        ("a@localhost", None),
        ("", None),
        (None, None),
        (42, None),
    ],
)
def test_normalises_emails(value: object, expected: str | None) -> None:
    assert normalise_email(value) == expected
