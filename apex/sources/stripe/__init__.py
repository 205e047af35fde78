"""Stripe: verify.py (signatures), extract.py (payloads), enrich.py (its API)."""

from apex.sources.source import Source
from apex.sources.stripe import enrich, extract, verify

SOURCE = Source(verify.NAME, verify.verify, extract.extract, enrich.build)
