"""Benchmarks: each prints one JSON line per figure, with a baseline measured in the same run."""
