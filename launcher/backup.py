"""`make backup [TO=folder]`, `make restore FROM=folder`: the database and APEX_SECRET_KEY
together, since stored signing secrets open only with the key they were sealed with.

A backup is a folder: `database.sqlite3` (a consistent copy through SQLite's backup API, safe
while processes write) or `database.pgdump` (pg_dump's custom format), `secret.key` (mode 0600)
and `backup.json` (when, which database kind, the schema revision). Restoring puts both back: the
database replaced by the copy, and the key into the development key file, or, when
APEX_SECRET_KEY comes from the environment, a line saying to set it. Restore with the processes
stopped; `make migrate` (or `make run`) then brings an older schema forward.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from config import SettingsError, load_settings
from launcher.run import VAR, dev_environment

DEFAULT_FOLDER = Path("backups")
SQLITE_FILE = "database.sqlite3"
PG_FILE = "database.pgdump"
KEY_FILE = "secret.key"
MANIFEST = "backup.json"


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why, in one line."""


def _libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    if not database or database == ":memory:":
        raise BackupError(f"cannot back up an in-memory SQLite database ({url})")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> None:
    """Copy one SQLite database onto another page by page (the backup API): consistent while
    other connections write, WAL included."""
    with closing(sqlite3.connect(source)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def _revision(url: str) -> str | None:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _run(command: list[str]) -> None:
    tool = command[0]
    if shutil.which(tool) is None:
        raise BackupError(f"{tool} is not installed (PostgreSQL's client tools)")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise BackupError(f"{tool} failed: {first}")


def create(url: str, secret_key: str, folder: Path) -> Path:
    """Write a backup of the database at `url` (as Settings.database_url) and of `secret_key`
    into `folder`, which must not exist yet. Returns `folder`. Raises BackupError."""
    if folder.exists():
        raise BackupError(f"{folder} exists already; name a new folder")
    folder.mkdir(parents=True)
    if folder.parent.name == DEFAULT_FOLDER.name and not (folder.parent / ".gitignore").exists():
        (folder.parent / ".gitignore").write_text("*\n")  # backups hold keys: never committed
    if url.startswith("sqlite"):
        kind = "sqlite"
        source = _sqlite_path(url)
        if not source.exists():
            raise BackupError(f"no database at {source}")
        _sqlite_copy(source, folder / SQLITE_FILE)
    else:
        kind = "postgresql"
        _run(["pg_dump", "--format=custom", "--no-owner", "--no-privileges",
              f"--file={folder / PG_FILE}", f"--dbname={_libpq_url(url)}"])  # fmt: skip
    key = folder / KEY_FILE
    key.touch(mode=0o600)
    key.write_text(secret_key + "\n")
    manifest = {
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "database": kind,
        "revision": _revision(url),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def restore(folder: Path, url: str) -> str:
    """Replace the database at `url` (as Settings.database_url) with the backup in `folder`;
    returns the backup's key (the caller puts it where the processes read it). Raises
    BackupError."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        key = (folder / KEY_FILE).read_text().strip()
    except (OSError, ValueError) as exc:
        raise BackupError(f"{folder} is not a backup ({exc})") from None
    kind = "sqlite" if url.startswith("sqlite") else "postgresql"
    if manifest.get("database") != kind:
        raise BackupError(f"{folder} holds a {manifest.get('database')} backup, not {kind}")
    if kind == "sqlite":
        target = _sqlite_path(url)
        target.parent.mkdir(parents=True, exist_ok=True)
        _sqlite_copy(folder / SQLITE_FILE, target)
    else:
        _run(["pg_restore", "--clean", "--if-exists", "--no-owner", "--no-privileges",
              "--single-transaction", f"--dbname={_libpq_url(url)}",
              str(folder / PG_FILE)])  # fmt: skip
    return key


def _put_key(key: str, keep_previous: bool) -> str:
    """Make the restored key the one the processes read; returns what to tell the user."""
    current = os.environ.get("APEX_SECRET_KEY") or None
    if current is not None:
        if current == key:
            return "APEX_SECRET_KEY already opens the restored secrets"
        return (
            "set APEX_SECRET_KEY to the backup's secret.key: the restored secrets open only with it"
        )
    path = VAR / "secret.key"
    if keep_previous and path.exists() and path.read_text().strip() != key:
        kept = path.with_name(f"secret.key.before-restore-{datetime.now(UTC):%Y%m%dT%H%M%SZ}")
        path.rename(kept)
        note = f"; the previous key is kept as {kept}"
    else:
        note = ""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(key + "\n")
    return f"{path} holds the restored key{note}"


USAGE = "usage: python -m launcher.backup create [FOLDER] | restore FOLDER"


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("create", "restore") or len(argv) > 2:
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "restore" and len(argv) < 2:
        print(USAGE, file=sys.stderr)
        return 2
    had_key = (VAR / "secret.key").exists()
    env = dev_environment()
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6390/0")  # required, but not contacted here
    try:
        settings = load_settings(env)
        if argv[0] == "create":
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
            folder = Path(argv[1]) if len(argv) > 1 else DEFAULT_FOLDER / f"apex-{stamp}"
            create(settings.database_url, settings.secret_key, folder)
            print(f"backup: database and APEX_SECRET_KEY in {folder} (keep it private)")
            return 0
        key = restore(Path(argv[1]), settings.database_url)
    except (BackupError, SettingsError) as exc:
        print(f"{argv[0]}: {exc}", file=sys.stderr)
        return 1
    print(f"restore: database restored from {argv[1]}; {_put_key(key, had_key)}")
    print("restore: `make migrate` (or `make run`) brings its schema up to this version")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
