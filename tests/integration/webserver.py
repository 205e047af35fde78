"""The web process as deployed, for tests that need a real HTTP server: gunicorn with the
project's config on a free loopback port, sharing the test's database and Redis."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from config import Settings
from launcher.embedded_redis import free_port
from tests.conftest import API_KEY
from tests.integration.conftest import ROOT, env_for, signal_group, wait_for


@contextmanager
def gunicorn(settings: Settings, log_path: Path, **environ: str) -> Iterator[str]:
    """Run `gunicorn -c config/gunicorn.py "app:create_app()"` until the block ends; yield its
    base URL. `environ` adds or overrides settings; the log is written to `log_path`."""
    port = free_port(0)
    env = {
        **env_for(settings),
        "APEX_API_KEYS": API_KEY,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        **environ,
    }
    base = f"http://127.0.0.1:{port}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "config/gunicorn.py",
                "-b",
                f"127.0.0.1:{port}",
                "app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:

            def serving() -> bool:
                assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
                try:
                    return requests.get(f"{base}/health", timeout=2).status_code < 600
                except requests.RequestException:
                    return False

            wait_for(serving, timeout=30, interval=0.2)
            yield base
        finally:
            signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                signal_group(proc, signal.SIGKILL)
                proc.wait()
