"""Apex Webhooks: the domain. Plain Python; imports neither flask nor rq."""
