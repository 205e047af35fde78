"""Operating it for years: APEX_SECRET_KEY rotation (the CLI and `make rotate-key`), backup and
restore of the database with its key (SQLite and PostgreSQL), `make clean` keeping a key that
data depends on, and `make run` with several workers and a taken PORT."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.fernet import InvalidToken
from redis import Redis
from rq import Worker

from apex import subscriptions
from apex.db import make_engine
from apex.models import subscriptions as subscriptions_table
from apex.secretbox import SecretBox, generate_key
from apex.subscriptions import SigningSecrets
from config import Settings
from launcher.embedded_redis import free_port
from tests.conftest import fresh_database
from tests.integration.conftest import ROOT, env_for, wait_for


def _newest_migration() -> str | None:
    config = Config()
    config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(config).get_current_head()


HEAD = _newest_migration()  # what a backup records as the schema revision


def _seal_some(url: str, key: str) -> dict[str, SigningSecrets]:
    """Three subscriptions sealed with `key` (one rotated, so it has a previous secret, one
    deleted); returns each id's secrets as they sign now."""
    engine = make_engine(url)
    box = SecretBox(key)
    made = [
        subscriptions.create(engine, box, f"https://example.com/{n}", ["lead.created"])[0].id
        for n in range(3)
    ]
    subscriptions.rotate_secret(engine, box, made[0], timedelta(hours=1))
    subscriptions.delete(engine, made[2])
    with engine.connect() as conn:
        signing = {i: subscriptions.signing_secrets(conn, box, i) for i in made}
    engine.dispose()
    return signing


def _tokens(url: str) -> list[str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(subscriptions_table.c.secret, subscriptions_table.c.previous_secret)
        ).all()
    engine.dispose()
    return [token for row in rows for token in row if token is not None]


def _opens(key: str, tokens: list[str]) -> int:
    box, opened = SecretBox(key), 0
    for token in tokens:
        try:
            box.open(token)
        except InvalidToken:
            continue
        opened += 1
    return opened


def _flask(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "flask", "--app", "app", *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.postgres
def test_rotation_reseals_every_stored_secret_so_only_the_new_key_opens_them(
    settings: Settings,
) -> None:
    old, new = settings.secret_key, generate_key()
    signing = _seal_some(settings.database_url, old)
    tokens = _tokens(settings.database_url)
    assert len(tokens) == 4 and _opens(old, tokens) == 4 and _opens(new, tokens) == 0

    env = {**env_for(settings), "APEX_SECRET_KEY": f"{new},{old}"}
    done = _flask(env, "secrets", "rotate")
    assert done.returncode == 0, done.stderr
    assert "Re-sealed 4 stored secrets" in done.stdout

    tokens = _tokens(settings.database_url)
    assert _opens(new, tokens) == 4 and _opens(old, tokens) == 0
    engine = make_engine(settings.database_url)
    with engine.connect() as conn:
        for sub_id, secrets in signing.items():  # the same secrets sign, under the new key
            assert (subscriptions.signing_secrets(conn, SecretBox(new), sub_id)) == secrets
    engine.dispose()
    again = _flask(env, "secrets", "rotate")
    assert again.returncode == 0 and "Re-sealed 0 stored secrets" in again.stdout


def test_rotation_refuses_a_secret_no_key_opens_and_names_only_its_subscription(
    settings: Settings,
) -> None:
    _seal_some(settings.database_url, settings.secret_key)
    stranger, other = generate_key(), generate_key()
    env = {**env_for(settings), "APEX_SECRET_KEY": f"{stranger},{other}"}  # the old key left out
    done = _flask(env, "secrets", "rotate")
    assert done.returncode == 1
    assert "opens with none of the keys; add the key it was sealed with" in done.stderr
    assert "whsec_" not in done.stderr + done.stdout
    tokens = _tokens(settings.database_url)
    assert _opens(settings.secret_key, tokens) == len(tokens)  # nothing changed


def _dev_env(var: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "APEX_SECRET_KEY")}
    env.update(APEX_DEV_DATA=str(var), PYTHONUNBUFFERED="1", **extra)
    return env


def _migrated_dev_database(var: Path, key: str) -> str:
    var.mkdir(parents=True, exist_ok=True)
    (var / "secret.key").write_text(key)
    url = f"sqlite:///{var / 'apex.db'}"
    upgrade = [sys.executable, "-m", "alembic", "upgrade", "head"]
    subprocess.run(upgrade, cwd=ROOT, env={**_dev_env(var), "DATABASE_URL": url}, check=True,
                   capture_output=True)  # fmt: skip
    return url


def _launcher(module: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", module, *args]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_make_rotate_key_leaves_the_new_key_alone_in_the_key_file(tmp_path: Path) -> None:
    var, old = tmp_path / "var", generate_key()
    url = _migrated_dev_database(var, old)
    _seal_some(url, old)
    done = _launcher("launcher.rotatekey", _dev_env(var))
    assert done.returncode == 0, done.stderr
    new = (var / "secret.key").read_text().strip()
    assert new != old and "," not in new
    assert stat.S_IMODE((var / "secret.key").stat().st_mode) == 0o600
    tokens = _tokens(url)
    assert _opens(new, tokens) == 4 and _opens(old, tokens) == 0


def test_make_rotate_key_refuses_a_key_from_the_environment(tmp_path: Path) -> None:
    done = _launcher("launcher.rotatekey", _dev_env(tmp_path, APEX_SECRET_KEY=generate_key()))
    assert done.returncode == 2
    assert "rotate it where it is set" in done.stderr


def test_sqlite_backup_and_restore_bring_back_the_database_and_its_key(tmp_path: Path) -> None:
    var, key = tmp_path / "var", generate_key()
    url = _migrated_dev_database(var, key)
    signing = _seal_some(url, key)
    folder = tmp_path / "backups" / "one"
    made = _launcher("launcher.backup", _dev_env(var), "create", str(folder))
    assert made.returncode == 0, made.stderr
    assert (folder / "secret.key").read_text().strip() == key
    assert stat.S_IMODE((folder / "secret.key").stat().st_mode) == 0o600
    manifest = json.loads((folder / "backup.json").read_text())
    assert manifest["database"] == "sqlite" and manifest["revision"] == HEAD
    assert (tmp_path / "backups" / ".gitignore").read_text() == "*\n"

    # Lose both: the subscriptions and the key.
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(subscriptions_table.delete())
    engine.dispose()
    (var / "secret.key").write_text(generate_key())

    restored = _launcher("launcher.backup", _dev_env(var), "restore", str(folder))
    assert restored.returncode == 0, restored.stderr
    assert (var / "secret.key").read_text().strip() == key
    assert len(list(var.glob("secret.key.before-restore-*"))) == 1  # the replaced key is kept
    engine = make_engine(url)
    with engine.connect() as conn:
        for sub_id, secrets in signing.items():
            assert (subscriptions.signing_secrets(conn, SecretBox(key), sub_id)) == secrets
    engine.dispose()


def test_a_backup_never_overwrites_a_folder(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _migrated_dev_database(var, generate_key())
    (tmp_path / "taken").mkdir()
    done = _launcher("launcher.backup", _dev_env(var), "create", str(tmp_path / "taken"))
    assert done.returncode == 1 and "exists already" in done.stderr


@pytest.mark.parametrize("kind", ["postgres"] if os.environ.get("TEST_DATABASE_URL") else [])
def test_postgresql_backup_and_restore_with_pg_dump(tmp_path: Path, kind: str) -> None:
    key = generate_key()
    with fresh_database(kind, tmp_path) as url:
        engine = make_engine(url)
        with engine.begin() as conn:  # fresh_database made the tables; stamp the revision
            conn.execute(sa.text("CREATE TABLE alembic_version (version_num varchar(32))"))
            conn.execute(sa.text(f"INSERT INTO alembic_version VALUES ('{HEAD}')"))
        engine.dispose()
        signing = _seal_some(url, key)
        env = _dev_env(tmp_path / "var", DATABASE_URL=url, APEX_SECRET_KEY=key)
        folder = tmp_path / "pg-backup"
        made = _launcher("launcher.backup", env, "create", str(folder))
        assert made.returncode == 0, made.stderr
        assert (folder / "database.pgdump").stat().st_size > 0
        assert json.loads((folder / "backup.json").read_text())["revision"] == HEAD

        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(subscriptions_table.delete())
        engine.dispose()
        restored = _launcher("launcher.backup", env, "restore", str(folder))
        assert restored.returncode == 0, restored.stderr
        assert "APEX_SECRET_KEY already opens the restored secrets" in restored.stdout
        engine = make_engine(url)
        with engine.connect() as conn:
            for sub_id, secrets in signing.items():
                assert (subscriptions.signing_secrets(conn, SecretBox(key), sub_id)) == secrets
        engine.dispose()


def test_make_clean_keeps_a_key_stored_secrets_depend_on(tmp_path: Path) -> None:
    var, key = tmp_path / "var", generate_key()
    url = _migrated_dev_database(var, key)
    _seal_some(url, key)
    refused = _launcher("launcher.clean", _dev_env(var))
    assert refused.returncode == 1
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("make clean: nothing deleted: ")
    assert "holds 3 signing secrets" in lines[0] and "make backup" in lines[0]
    assert (var / "secret.key").read_text() == key and (var / "apex.db").exists()

    elsewhere = _launcher("launcher.clean", _dev_env(var, DATABASE_URL="postgres://db/apex"))
    assert elsewhere.returncode == 1 and "DATABASE_URL" in elsewhere.stderr

    forced = _launcher("launcher.clean", _dev_env(var), "--force")
    assert forced.returncode == 0 and not var.exists()


def test_make_clean_deletes_data_no_secret_depends_on(tmp_path: Path) -> None:
    var = tmp_path / "var"
    _migrated_dev_database(var, generate_key())  # a key, but no subscription sealed with it
    done = _launcher("launcher.clean", _dev_env(var))
    assert done.returncode == 0 and not var.exists()


def test_make_clean_refuses_then_with_force_deletes_the_venv_and_the_data(
    tmp_path: Path,
) -> None:
    var, venv, key = tmp_path / "var", tmp_path / "venv", generate_key()
    _seal_some(_migrated_dev_database(var, key), key)
    venv.mkdir()
    make = ["make", "--no-print-directory", "clean", f"VENV={venv}", f"PYTHON={sys.executable}"]
    refused = subprocess.run(make, cwd=ROOT, env=_dev_env(var), capture_output=True, text=True)
    assert refused.returncode != 0 and "make clean: nothing deleted" in refused.stderr
    assert venv.exists() and (var / "secret.key").exists()
    forced = subprocess.run(
        [*make, "FORCE=1"], cwd=ROOT, env=_dev_env(var), capture_output=True, text=True
    )
    assert forced.returncode == 0, forced.stderr
    assert not venv.exists() and not var.exists()


def test_run_starts_several_workers(settings: Settings, tmp_path: Path) -> None:
    port = free_port(0)
    env = _dev_env(tmp_path / "var", REDIS_URL=settings.redis_url, PORT=str(port), WORKERS="3")
    env.pop("APEX_API_KEYS", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "launcher.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    redis = Redis.from_url(settings.redis_url)
    try:

        def healthy() -> bool:
            try:
                answer = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
            except requests.RequestException:
                return False
            return answer.status_code == 200

        wait_for(healthy, timeout=60, interval=0.3)
        workers = wait_for(lambda: len(Worker.all(connection=redis)) == 3 or None, timeout=60)
        assert workers
        pids = {w.pid for w in Worker.all(connection=redis)}
        assert len(pids) == 3
    finally:
        os.killpg(launcher.pid, signal.SIGINT)
        assert launcher.wait(60) in (0, 130)
        redis.close()


def test_run_says_in_one_line_that_the_port_is_taken(settings: Settings, tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        env = _dev_env(tmp_path / "var", REDIS_URL=settings.redis_url, PORT=str(port))
        done = _launcher("launcher.run", env)
    assert done.returncode == 1
    lines = done.stderr.splitlines()
    assert lines == [
        f"launcher: port {port} on 127.0.0.1 is taken (another `make run`?); stop that process "
        f"or choose another port: PORT={port + 1} make run"
    ]
    assert done.stdout == ""  # nothing started: no Redis, no migrations
