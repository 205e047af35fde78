"""`flask --app app keys create|list|revoke`: manage stored API keys; `flask --app app secrets
rotate`: re-seal stored signing secrets with the first APEX_SECRET_KEY."""

from __future__ import annotations

import click
from cryptography.fernet import InvalidToken
from flask import Flask
from flask.cli import AppGroup

from apex import apikeys
from apex.api.fields import isoformat_z
from apex.api.runtime import runtime
from apex.errors import ApexError
from apex.secretbox import reseal_stored

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


secrets = AppGroup("secrets", help="Signing secrets at rest (sealed with APEX_SECRET_KEY).")


@secrets.command("rotate")
def rotate_secrets() -> None:
    """Re-seal every stored secret with the first of APEX_SECRET_KEY's keys (set
    APEX_SECRET_KEY=new,old first; afterwards new alone opens them all)."""
    rt = runtime()
    try:
        count = reseal_stored(rt.engine, rt.box)
    except InvalidToken as exc:
        raise click.ClickException(f"{exc}; add the key it was sealed with") from None
    click.echo(f"Re-sealed {count} stored secrets with the first key; every one opens with it.")


def init_cli(app: Flask) -> None:
    app.cli.add_command(keys)
    app.cli.add_command(secrets)
