"""`make run`: development defaults, an embedded Redis when REDIS_URL is unset, migrations, then
web + worker + scheduler under honcho (`WORKERS=3 make run`: three worker processes). Ctrl-C (or
SIGTERM) stops everything, Redis last. A PORT something already listens on stops it at once."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from apex.secretbox import generate_key
from launcher.embedded_redis import EmbeddedRedis

VAR = Path(os.environ.get("APEX_DEV_DATA", "var"))  # development data: SQLite, Redis AOF, key


def _dev_secret_key() -> str:
    path = VAR / "secret.key"
    if not path.exists():
        VAR.mkdir(exist_ok=True)
        path.write_text(generate_key())
        path.chmod(0o600)
    return path.read_text().strip()


def dev_environment() -> dict[str, str]:
    """The environment for the processes: the caller's, plus development defaults."""
    env = dict(os.environ)
    # The Procfile names gunicorn and python: make them this virtualenv's.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    if not env.get("APEX_SECRET_KEY"):
        env["APEX_SECRET_KEY"] = _dev_secret_key()
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'apex.db'}")
    env.setdefault("PORT", "5000")
    env.setdefault("APEX_LOG_FORMAT", "text")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Development serves this machine only; the Procfile's 0.0.0.0 is for a platform's router.
    env.setdefault("GUNICORN_CMD_ARGS", f"--bind 127.0.0.1:{env['PORT']}")
    # A local trial may configure a short key (APEX_API_KEYS=apex_key_abc123): it serves only
    # this machine. Deployed, keys under 24 characters stop the boot.
    env.setdefault("APEX_ALLOW_WEAK_KEYS", "1")
    # No proxy in front: the socket peer is the client (an X-Forwarded-For is the client's own).
    env.setdefault("APEX_TRUSTED_PROXIES", "0")
    # Metrics of web, worker and scheduler processes add up through files in this folder.
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str((VAR / "prometheus").resolve()))
    return env


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port` (bound as gunicorn binds: SO_REUSEADDR,
    so a port with only closed connections lingering counts as free)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _workers(env: dict[str, str]) -> int:
    raw = env.get("WORKERS", "1")
    if not raw.isdecimal() or int(raw) < 1:
        raise SystemExit(f"launcher: WORKERS must be a positive number of processes, got {raw!r}")
    return int(raw)


READY_WAIT = 120.0  # seconds to wait for /health before giving up on announcing the URLs


def urls_text(base: str) -> str:
    """What `make run` prints once the web process answers /health."""
    return "\n".join(
        [
            f"launcher: Apex is up at {base}/",
            f"  console      {base}/console   (sign in with an API key)",
            f"  API docs     {base}/api/docs",
            f"  queues       {base}/rq/       (any user name, an API key as the password)",
            f"  metrics      {base}/metrics   (x-api-key)",
            "  an API key:  make apikey NAME=me   (printed once; or set APEX_API_KEYS)",
        ]
    )


def announce_when_healthy(port: int, deadline: float = READY_WAIT) -> threading.Thread:
    """Print urls_text() once http://127.0.0.1:<port>/health answers 200 (in a daemon thread;
    nothing is printed if it never does within `deadline` seconds)."""
    base = f"http://127.0.0.1:{port}"

    def wait() -> None:
        until = time.monotonic() + deadline
        while time.monotonic() < until:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        print(urls_text(base), flush=True)
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)

    thread = threading.Thread(target=wait, name="announce", daemon=True)
    thread.start()
    return thread


def main() -> int:
    env = dev_environment()
    workers = _workers(env)
    if not env["PORT"].isdecimal() or not 0 < int(env["PORT"]) < 65536:
        print(f"launcher: PORT must be a port number, got {env['PORT']!r}", file=sys.stderr)
        return 2
    if port_taken(int(env["PORT"])):
        print(
            f"launcher: port {env['PORT']} on 127.0.0.1 is taken (another `make run`?); stop "
            f"that process or choose another port: PORT={int(env['PORT']) + 1} make run",
            file=sys.stderr,
        )
        return 1
    redis = None
    if not env.get("REDIS_URL"):
        redis = EmbeddedRedis(VAR / "redis").start()
        env["REDIS_URL"] = redis.url
        print(f"launcher: embedded Redis on {redis.url} (data in {VAR / 'redis'})", flush=True)
    honcho: subprocess.Popen[bytes] | None = None

    def forward(signum: int, _frame: FrameType | None) -> None:
        if honcho is not None and honcho.poll() is None:
            honcho.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    try:
        shutil.rmtree(env["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
        subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True)
        honcho = subprocess.Popen(
            [sys.executable, "-m", "launcher.procfile", "start", "-f", "Procfile",
             "-p", env["PORT"], "-c", f"worker={workers}", "web", "worker", "scheduler"],
            env=env,
        )  # fmt: skip
        announce_when_healthy(int(env["PORT"]))
        while True:
            try:
                return honcho.wait()
            except KeyboardInterrupt:
                continue  # honcho got the same Ctrl-C and is stopping its processes
    except subprocess.CalledProcessError as exc:
        return exc.returncode
    finally:
        if redis is not None:
            redis.stop()
            print("launcher: embedded Redis stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
