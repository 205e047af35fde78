"""Shared fixtures: a real Redis (TEST_REDIS_URL or an embedded one), a fresh database per test
(SQLite always; PostgreSQL too for tests marked `postgres` when TEST_DATABASE_URL is set)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex.db import make_engine
from apex.models import metadata
from apex.secretbox import generate_key
from app import create_app
from config import Settings
from launcher.embedded_redis import EmbeddedRedis

API_KEY = "test-key-" + secrets.token_hex(8)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_kind" in metafunc.fixturenames:
        kinds = ["sqlite"]
        if metafunc.definition.get_closest_marker("postgres") and os.environ.get(
            "TEST_DATABASE_URL"
        ):
            kinds.append("postgres")
        metafunc.parametrize("database_kind", kinds)


@pytest.fixture(scope="session")
def redis_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TEST_REDIS_URL")
    if url:
        yield url
        return
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), persist=False).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """The test Redis database, emptied before each test so no test sees another's leftovers."""
    conn = Redis.from_url(redis_server_url)
    conn.flushdb()
    conn.close()
    yield redis_server_url


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Redis]:
    conn = Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def database_kind() -> str:  # parametrized by pytest_generate_tests
    return "sqlite"


def database_kinds() -> list[str]:
    """The databases a test that runs on each should use: SQLite, and PostgreSQL when
    TEST_DATABASE_URL is set."""
    return ["sqlite", "postgres"] if os.environ.get("TEST_DATABASE_URL") else ["sqlite"]


@contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    """A fresh, empty database with the schema, as a URL: a new SQLite file in `folder`, or a
    new PostgreSQL schema in TEST_DATABASE_URL (dropped afterwards)."""
    if kind == "sqlite":
        url = f"sqlite:///{folder / 'apex.db'}"
        engine = make_engine(url)
        metadata.create_all(engine)
        engine.dispose()
        yield url
        return
    base = os.environ["TEST_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    schema = "t_" + secrets.token_hex(6)
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in base else "?"
    url = f"{base}{separator}options={quote(f'-csearch_path={schema}')}"
    engine = make_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def database_url(database_kind: str, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database with the schema: a new SQLite file, or a new PostgreSQL schema."""
    with fresh_database(database_kind, tmp_path) as url:
        yield url


@pytest.fixture
def settings(redis_url: str, database_url: str) -> Settings:
    return Settings(
        redis_url=redis_url,
        secret_key=generate_key(),
        database_url=database_url,
        api_keys=(API_KEY,),
        allow_http=True,
        allow_private_destinations=True,
        retry_schedule=(1, 2, 3),
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions["apex"].engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"x-api-key": API_KEY}
