"""Stored inbound events: one row per verified event, claimed and processed by workers."""
