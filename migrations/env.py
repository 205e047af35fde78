"""Alembic environment: the database URL comes from DATABASE_URL (via config), or the caller."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context

import apex.pipeline.tables  # noqa: F401  (registers the pipeline's tables on metadata)
from apex.db import make_engine
from apex.models import metadata
from config.settings import DEFAULT_DATABASE_URL, _database_url

if context.config.config_file_name and not context.config.attributes.get("connection"):
    fileConfig(context.config.config_file_name, disable_existing_loggers=False)


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = _database_url(os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    engine = make_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run()
