"""`make run`'s launcher: the whole system comes up on embedded defaults, serves the API, and
Ctrl-C leaves no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from launcher.embedded_redis import free_port
from tests.integration.conftest import ROOT, wait_for


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_run_serves_everything_and_ctrl_c_stops_it_all(tmp_path: Path) -> None:
    port = free_port(0)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(APEX_DEV_DATA=str(tmp_path / "var"), PORT=str(port), APEX_API_KEYS="launch-key")
    env.pop("APEX_SECRET_KEY", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, like a terminal's foreground job
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return requests.get(f"{base}/health", timeout=1).json()["status"] == "ok"
            except requests.RequestException:
                return False

        wait_for(healthy, timeout=60, interval=0.3)
        headers = {"x-api-key": "launch-key"}
        created = requests.post(
            f"{base}/api/webhooks",
            json={"url": "https://example.com/hooks/apex", "events": ["lead.created"]},
            headers=headers,
            timeout=5,
        )
        assert created.status_code == 201
        assert requests.get(f"{base}/api/webhooks", headers=headers, timeout=5).json()[0]["id"]
        assert (tmp_path / "var" / "secret.key").exists()
        family = _descendants(launcher.pid)
        commands = " ".join(Path(f"/proc/{p}/cmdline").read_text() for p in family if _alive(p))
        for name in ("valkey-server", "gunicorn", "workers", "workers.scheduled"):
            assert name in commands.replace("\0", " ")
    finally:
        os.killpg(launcher.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        assert launcher.wait(45) in (0, 130)  # 130: ended by SIGINT, as a shell reports it
    assert not [p for p in family if _alive(p)]


def test_a_process_stopping_slowly_gets_more_than_honchos_five_seconds(tmp_path: Path) -> None:
    # A process that needs 7 s after SIGTERM (a worker finishing in-flight deliveries) beside
    # one that stops at once (web): plain honcho SIGKILLs the slow one 5 s after the quick one
    # stopped; the launcher's honcho waits GRACE_SECONDS.
    done = tmp_path / "finished"
    slow = (
        "import signal, sys, time, pathlib\n"
        "def stop(*_):\n"
        "    time.sleep(7)\n"
        f"    pathlib.Path({str(done)!r}).write_text('ok')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    (tmp_path / "slow.py").write_text(slow)
    quick = "import time\nprint('ready', flush=True)\ntime.sleep(60)\n"
    (tmp_path / "quick.py").write_text(quick)
    (tmp_path / "Procfile").write_text(
        f"slow: {sys.executable} {tmp_path / 'slow.py'}\n"
        f"quick: {sys.executable} {tmp_path / 'quick.py'}\n"
    )
    honcho = subprocess.Popen(
        [sys.executable, "-m", "launcher.procfile", "start", "-f", str(tmp_path / "Procfile")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert honcho.stdout is not None
        ready = 0
        for line in honcho.stdout:
            ready += "ready" in line
            if ready == 2:
                break
        honcho.send_signal(signal.SIGTERM)
        output = honcho.communicate(timeout=40)[0]
    finally:
        if honcho.poll() is None:
            honcho.kill()
    assert done.read_text() == "ok", output
    assert "SIGKILL" not in output
