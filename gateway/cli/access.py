"""`moltbot token`, `pairing` and `secret`: who may talk to the gateway, and the secrets
config.yaml refers to. They work on the workspace directly, gateway running or not."""

from __future__ import annotations

import json
import sys
import time

import click

from gateway.cli.shared import EXIT_CONFIG, _audit, _fail, _seconds, _utc, _with_store
from gateway.common.workspace import default_workspace, ensure_workspace


@click.group()
def secret() -> None:
    """Secrets in the OS keyring, for ${keyring:NAME} values in config.yaml."""

@secret.command("set")
@click.argument("name")
def secret_set(name: str) -> None:
    """Store NAME: typed twice with hidden input, or read from stdin when it is not a terminal."""
    from gateway.common.secrets import SERVICE, SecretStoreError, store_secret

    if sys.stdin.isatty():
        value = click.prompt(f"Value of {name}", hide_input=True, confirmation_prompt=True)
    else:
        value = sys.stdin.read().removesuffix("\n").removesuffix("\r")
    try:
        backend = store_secret(name, value)
    except SecretStoreError as e:
        _fail(f"Not stored: {e}")
    click.echo(f"Stored {name} in the OS keyring ({backend}, service {SERVICE}). "
               f"Use it in config.yaml as ${{keyring:{name}}}.")

@secret.command("delete")
@click.argument("name")
def secret_delete(name: str) -> None:
    """Remove NAME from the OS keyring."""
    from gateway.common.secrets import SecretStoreError, delete_secret

    try:
        delete_secret(name)
    except SecretStoreError as e:
        _fail(f"Not deleted: {e}")
    click.echo(f"Deleted {name} from the OS keyring.")

@click.group()
def token() -> None:
    """Bearer tokens for scripts, devices and the console: create, list, revoke, rotate.

    Only a token's hash is stored; its value is shown once, when it is made.
    """

@token.command("create")
@click.option("--name", required=True, help="What the token is for, e.g. phone or backup.")
@click.option("--expire", default="30d", show_default=True, help="Lifetime, e.g. 8h, 30d.")
@click.option("--json", "as_json", is_flag=True, help="Print {token, name, expires_at}.")
def token_create(name: str, expire: str, as_json: bool) -> None:
    """Make a new token; it works at once, also in a running gateway."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    seconds = _seconds("--expire", expire)
    if not seconds:
        _fail("--expire must be longer than 0", EXIT_CONFIG)
    ws = default_workspace()
    ensure_workspace(ws)
    store = Store(ws.db_url)
    try:
        value, expires_at = issue_token(store, seconds, label=name)
    finally:
        store.close()
    _audit("token.created", name=name, expires_at=_utc(expires_at))
    if as_json:
        click.echo(json.dumps({"token": value, "name": name, "expires_at": _utc(expires_at)}))
    else:
        click.echo(f"Token:   {value}\nName:    {name}\nExpires: {_utc(expires_at)}\n"
                   "It is shown only now: keep it somewhere safe.")

@token.command("list")
@click.option("--json", "as_json", is_flag=True)
def token_list(as_json: bool) -> None:
    """Every token that still works: its id, name, creation and expiry (never its value)."""
    rows = [{"id": r.id, "name": r.label, "created_at": _utc(r.created_at),
             "expires_at": _utc(r.expires_at)} for r in _token_rows()]
    if as_json:
        click.echo(json.dumps({"tokens": rows}))
        return
    for row in rows:
        click.echo(f"{row['id']}  {row['name']:<16} created {row['created_at']}  "
                   f"expires {row['expires_at']}")
    if not rows:
        click.echo("No tokens. Make one with `moltbot token create --name NAME`.")

@token.command("revoke")
@click.argument("name_or_id")
def token_revoke(name_or_id: str) -> None:
    """End every token with this name, or the one with this id, within a second."""
    _end_tokens(name_or_id, 0.0, "revoked")

@token.command("rotate")
@click.argument("name")
@click.option("--grace", default="1h", show_default=True,
              help="How long the old token keeps working, e.g. 0, 10m, 1d.")
@click.option("--expire", default="30d", show_default=True, help="The new token's lifetime.")
@click.option("--json", "as_json", is_flag=True)
def token_rotate(name: str, grace: str, expire: str, as_json: bool) -> None:
    """A new token for NAME; the old one(s) keep working for the grace period, then end."""
    from gateway.core.store import Store
    from gateway.guards.tokens import issue_token

    grace_s, expire_s = _seconds("--grace", grace), _seconds("--expire", expire)
    old = [r for r in _token_rows() if r.label == name]
    if not old:
        _fail(f"No token named {name!r}; `moltbot token list` shows the names.")
    ws = default_workspace()
    store = Store(ws.db_url)
    try:
        value, expires_at = issue_token(store, expire_s, label=name)
        store.expire_tokens([r.hash for r in old], time.time() + grace_s)
    finally:
        store.close()
    _audit("token.rotated", name=name, grace_s=grace_s, old=[r.id for r in old])
    if as_json:
        click.echo(json.dumps({"token": value, "name": name, "expires_at": _utc(expires_at),
                               "old_until": _utc(time.time() + grace_s)}))
    else:
        click.echo(f"Token:   {value}\nName:    {name}\nExpires: {_utc(expires_at)}\n"
                   f"The old token works until {_utc(time.time() + grace_s)}.")

def _token_rows() -> list:
    from gateway.core.store import Store

    ws = default_workspace()
    if not (ws.data / "moltbot.db").exists():
        return []
    store = Store(ws.db_url)
    try:
        return store.tokens(time.time())
    finally:
        store.close()

def _end_tokens(name_or_id: str, after: float, verb: str) -> None:
    from gateway.core.store import Store

    matching = [r for r in _token_rows() if name_or_id in (r.label, r.id)]
    if not matching:
        _fail(f"No token with the name or id {name_or_id!r}; `moltbot token list` shows them.")
    store = Store(default_workspace().db_url)
    try:
        store.expire_tokens([r.hash for r in matching], time.time() + after)
    finally:
        store.close()
    _audit(f"token.{verb}", match=name_or_id, ids=[r.id for r in matching])
    click.echo(f"{verb} {len(matching)} token(s): " + ", ".join(r.id for r in matching))

@click.group()
def pairing() -> None:
    """Chat-platform senders the stranger policy has met: list, approve, block, unblock.

    A sender is named "<channel>:<sender id>", e.g. enterprise_im:alice.
    """

@pairing.command("list")
@click.option("--json", "as_json", is_flag=True)
def pairing_list(as_json: bool) -> None:
    """Every sender met, with its state: pending (code sent), awaiting_owner, approved,
    blocked."""
    rows = [{"sender": r.key, "state": r.state, "since": _utc(r.updated_at)}
            for r in _with_store(lambda store: store.senders())]
    if as_json:
        click.echo(json.dumps({"senders": rows}, ensure_ascii=False))
        return
    for row in rows:
        click.echo(f"{row['sender']:<32} {row['state']:<15} since {row['since']}")
    if not rows:
        click.echo("No senders yet: strangers appear here when they first write.")

@pairing.command("approve")
@click.argument("sender")
def pairing_approve(sender: str) -> None:
    """Let this sender talk to the assistant (with or without a code)."""
    _set_sender(sender, "approved")

@pairing.command("block")
@click.argument("sender")
def pairing_block(sender: str) -> None:
    """Never answer this sender again."""
    _set_sender(sender, "blocked")

@pairing.command("unblock")
@click.argument("sender")
def pairing_unblock(sender: str) -> None:
    """Forget the sender: their next message is a stranger's again (a new code)."""
    channel, name = _sender_key(sender)
    forgotten = _with_store(lambda store: store.forget_sender(channel, name))
    _audit("pairing.unblocked", sender=sender, known=forgotten)
    click.echo(f"{sender} unblocked: their next message gets a new code." if forgotten
               else f"{sender} was not known; nothing to do.")

def _sender_key(sender: str) -> tuple[str, str]:
    channel, _, name = sender.partition(":")
    if not channel or not name:
        _fail(f"Name the sender as <channel>:<sender id>, e.g. enterprise_im:alice "
              f"(`moltbot pairing list` shows them), not {sender!r}.", EXIT_CONFIG)
    return channel, name

def _set_sender(sender: str, state: str) -> None:
    from gateway.guards.stranger import SenderRow

    channel, name = _sender_key(sender)
    _with_store(lambda store: store.put_sender(SenderRow(channel, name, state,
                                                         updated_at=time.time())))
    _audit(f"pairing.{state}", sender=sender)
    click.echo(f"{sender}: {state}")
