"""`make clean`: delete the local data folder, unless a database still depends on its key.

The development key (`var/secret.key`) is the only thing that opens the signing secrets stored
with it. Deleting it while a database holds such secrets loses them for good, so `make clean`
refuses, deletes nothing and says what depends on the key; `make backup` keeps both, and
`make clean FORCE=1` deletes anyway. Standard library only: it runs without the virtualenv.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
from contextlib import closing
from pathlib import Path

VAR = Path(os.environ.get("APEX_DEV_DATA", "var"))  # as launcher.run


def _stored_secrets(database: Path) -> int:
    """Subscriptions (each with a sealed secret, deleted ones included) in a SQLite file."""
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM subscriptions").fetchone()[0])
    except sqlite3.Error:  # no such table (never migrated), or not a database
        return 0


def depends_on_key(var: Path, database_url: str | None) -> str | None:
    """What depends on `var`'s key file, in words, or None when nothing does (or it is absent)."""
    if not (var / "secret.key").exists():
        return None
    local = var / "apex.db"
    if database_url and not database_url.endswith(f"///{local}"):
        return f"the database at DATABASE_URL may hold signing secrets sealed with {var}/secret.key"
    count = _stored_secrets(local) if local.exists() else 0
    if count:
        return f"{local} holds {count} signing secrets that open only with {var}/secret.key"
    return None


def main(argv: list[str]) -> int:
    force = argv == ["--force"]
    if argv and not force:
        print("usage: python -m launcher.clean [--force]", file=sys.stderr)
        return 2
    reason = depends_on_key(VAR, os.environ.get("DATABASE_URL"))
    if reason and not force:
        print(
            f"make clean: nothing deleted: {reason}; `make backup` keeps the database and the "
            "key together, then `make clean FORCE=1` deletes them",
            file=sys.stderr,
        )
        return 1
    shutil.rmtree(VAR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
