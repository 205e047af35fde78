"""`make apikey NAME=…`, `make apikeys`, `make apikey-revoke ID=…`: API keys in the local
database (only their hashes are stored; a new key is printed once, alone on stdout)."""

from __future__ import annotations

import subprocess
import sys

from launcher.run import dev_environment

USAGE = "usage: python -m launcher.apikey create NAME | list | revoke KEY_ID"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("create", "list", "revoke") or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    env = dev_environment()
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6390/0")  # required, but not contacted here
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    flask = [sys.executable, "-m", "flask", "--app", "app", "keys", *argv]
    return subprocess.run(flask, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
