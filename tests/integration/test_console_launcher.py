"""`make run` says where everything is once the web process is healthy, and how to get a key."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from launcher.embedded_redis import free_port
from tests.integration.conftest import ROOT, wait_for


def test_run_prints_the_urls_once_healthy(tmp_path: Path) -> None:
    port = free_port(0)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APEX_DEV_DATA=str(tmp_path / "var"), PORT=str(port), PYTHONUNBUFFERED="1")
    env.pop("APEX_SECRET_KEY", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert launcher.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(launcher.stdout or []), daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("make apikey" in line for line in lines), timeout=90, interval=0.3)
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        launcher.wait(45)
        reader.join(10)
        launcher.stdout.close()
    text = "".join(lines)
    base = f"http://127.0.0.1:{port}"
    assert f"launcher: Apex is up at {base}/" in text
    for path in ("/console", "/api/docs", "/rq/", "/metrics"):
        assert f"{base}{path}" in text
