"""`make rotate-key`: a new development APEX_SECRET_KEY, with every stored signing secret
re-sealed under it. Stop `make run` first: running processes know only the old key.

The key file holds "new,old" while the secrets are re-sealed (`flask --app app secrets rotate`),
so a rotation cut short leaves every secret readable; once all are re-sealed it holds the new
key alone. A deployment rotates where its key is set (see the README's "Operating it").
"""

from __future__ import annotations

import os
import subprocess
import sys

from apex.secretbox import generate_key
from launcher.run import VAR, dev_environment


def _write_key(value: str) -> None:
    path = VAR / "secret.key"
    fresh = path.with_name("secret.key.new")
    fresh.touch(mode=0o600)
    fresh.write_text(value + "\n")
    fresh.replace(path)  # atomic: the file holds one whole value or the other


def main() -> int:
    if os.environ.get("APEX_SECRET_KEY"):
        print(
            "rotate-key: APEX_SECRET_KEY comes from the environment; rotate it where it is set: "
            "APEX_SECRET_KEY=new,old, then `flask --app app secrets rotate`, then "
            "APEX_SECRET_KEY=new",
            file=sys.stderr,
        )
        return 2
    env = dev_environment()
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6390/0")  # required, but not contacted here
    old = env["APEX_SECRET_KEY"]
    new = generate_key()
    both = f"{new},{old}"  # every old key: an unfinished rotation may have left two
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _write_key(both)
    env["APEX_SECRET_KEY"] = both
    done = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "secrets", "rotate"],
                          env=env)  # fmt: skip
    if done.returncode != 0:
        print(f"rotate-key: not finished; {VAR / 'secret.key'} keeps both keys", file=sys.stderr)
        return done.returncode
    _write_key(new)
    print(f"rotate-key: {VAR / 'secret.key'} holds the new key alone", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
