"""Inbound sources, one package per platform: verify.py (its signature scheme), extract.py (the
records its payloads carry), enrich.py (completing them from its API). `registry.SOURCES` lists
them; the shared stages (stitch, attribute, goals, publish) live in `apex.pipeline`."""
