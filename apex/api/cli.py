"""`flask --app app keys create|list|revoke`: manage stored API keys."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from apex import apikeys
from apex.api.fields import isoformat_z
from apex.api.runtime import runtime
from apex.errors import ApexError

keys = AppGroup("keys", help="Create, list and revoke API keys (only hashes are stored).")


@keys.command("create")
@click.argument("name")
def create_key(name: str) -> None:
    """Create a key and print it once."""
    record, plaintext = apikeys.create_key(runtime().engine, name)
    click.echo(f"Created API key {record.id} ({name}). It is shown only now:", err=True)
    click.echo(plaintext)


@keys.command("list")
def list_keys() -> None:
    for k in apikeys.list_keys(runtime().engine):
        state = f"revoked {isoformat_z(k.revoked_at)}" if k.revoked_at else "active"
        click.echo(f"{k.id}\t{k.name}\t{k.prefix}…\t{isoformat_z(k.created_at)}\t{state}")


@keys.command("revoke")
@click.argument("key_id")
def revoke_key(key_id: str) -> None:
    try:
        apikeys.revoke_key(runtime().engine, key_id)
    except ApexError as exc:
        raise click.ClickException(exc.detail) from None
    click.echo(f"Revoked {key_id}")


def init_cli(app: Flask) -> None:
    app.cli.add_command(keys)
