"""Outgoing delivery: Standard Webhooks signing, retry policy and the SSRF-safe HTTP transport."""
