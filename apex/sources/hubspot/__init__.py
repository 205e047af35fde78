"""HubSpot: verify.py (signatures), extract.py (payloads), enrich.py (its API)."""

from apex.sources.hubspot import enrich, extract, verify
from apex.sources.source import Source

SOURCE = Source(
    verify.NAME, verify.verify, extract.extract, enrich.build, verify.verify_with_legacy
)
