"""Incoming webhooks: one verifier module per source, chosen from VERIFIERS."""
