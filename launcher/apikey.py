"""`make apikey NAME=…`: create an API key in the local database and print it once."""

from __future__ import annotations

import os
import subprocess
import sys

from launcher.run import dev_environment


def main() -> int:
    env = dev_environment()
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6390/0")  # not contacted by this command
    name = sys.argv[1] if len(sys.argv) > 1 else "local"
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    flask = [sys.executable, "-m", "flask", "--app", "app", "keys", "create", name]
    return subprocess.run(flask, env=env).returncode


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
