"""Storage: migrations match the models, API keys from the CLI, secrets encrypted at rest."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from flask import Flask
from flask.testing import FlaskClient

from apex.db import make_engine
from apex.models import metadata, subscriptions
from tests.factories import subscription_body

pytestmark = pytest.mark.postgres


def test_migrations_build_the_models_schema(database_url: str) -> None:
    engine = make_engine(database_url)
    metadata.drop_all(engine)
    with engine.begin() as conn:
        config = Config("alembic.ini")
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_cli_key_is_printed_once_and_works_until_revoked(app: Flask) -> None:
    runner = app.test_cli_runner()
    created = runner.invoke(args=["keys", "create", "ci"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    key_id = created.stderr.split()[3]
    client = app.test_client()
    assert client.get("/api/webhooks", headers={"x-api-key": key}).status_code == 200

    listed = runner.invoke(args=["keys", "list"])
    assert key_id in listed.output and key not in listed.output

    with app.extensions["apex"].engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT key_hash FROM api_keys")).scalar_one()
    assert key not in stored

    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code == 0
    assert client.get("/api/webhooks", headers={"x-api-key": key}).status_code == 401
    assert runner.invoke(args=["keys", "revoke", key_id]).exit_code != 0


def test_signing_secret_is_encrypted_at_rest(
    app: Flask, client: FlaskClient, auth: dict[str, str]
) -> None:
    created = client.post("/api/webhooks", json=subscription_body(), headers=auth).json
    with app.extensions["apex"].engine.connect() as conn:
        stored = conn.execute(sa.select(subscriptions.c.secret)).scalar_one()
    assert created["secret"] not in stored
    assert app.extensions["apex"].box.open(stored) == created["secret"]


def test_health_is_503_when_redis_is_down(app: Flask) -> None:
    from dataclasses import replace

    from redis import Redis

    rt = app.extensions["apex"]
    app.extensions["apex"] = replace(rt, redis=Redis(port=1, socket_connect_timeout=0.2))
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.json == {"status": "degraded", "checks": {"redis": "down", "database": "ok"}}
