"""A missing or malformed setting stops the worker and the scheduler at boot: one line naming
the variable, a non-zero exit, and no retrying."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config import Settings
from tests.integration.conftest import ROOT, env_for

CASES = [
    ({"REDIS_URL": ""}, "REDIS_URL is required but not set"),
    ({"APEX_SECRET_KEY": "not-a-key"}, "APEX_SECRET_KEY is malformed"),
    ({"APEX_SWEEP_INTERVAL": "soon"}, "APEX_SWEEP_INTERVAL is malformed"),
    ({"DATABASE_URL": "mysql://db/apex"}, "DATABASE_URL is malformed"),
]


@pytest.mark.parametrize(
    ("module", "prefix"), [("workers", "worker"), ("workers.scheduled", "scheduler")]
)
@pytest.mark.parametrize(("overrides", "message"), CASES)
def test_a_bad_setting_stops_the_process_with_one_line(
    settings: Settings, module: str, prefix: str, overrides: dict[str, str], message: str
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**env_for(settings), **overrides},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prefix}: {message}"), done.stderr
    assert done.stdout == ""
