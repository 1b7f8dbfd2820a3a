"""`tradebridge apikeys create|list|revoke --email`: TradeBridge API keys for the Binance-compatible API,
managed from the command line (audited like the web page's and the REST API's, with no address)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

apikeys_app = typer.Typer(
    help="Manage API keys for the Binance-compatible API (/binance).", no_args_is_help=True
)
console = Console(stderr=True, soft_wrap=True)
T = TypeVar("T")

EmailOpt = Annotated[str, typer.Option(help="The account's email.")]


def _with_service(email: str, action: Callable[[Any, str], Awaitable[T]]) -> T:
    """Run ``action(service, user_id)`` for the account ``email`` in one transaction on the configured database (migrated first)."""
    from gateway.services.apikeys import ApiKeyService
    from gateway.services.audit import Auditor
    from shared import migrate as m
    from shared.clock import SystemClock
    from shared.db import create_engine, session_factory, unit_of_work
    from shared.security.crypto import KeyRing
    from tradebridge.cli import _check_secrets, _settings

    settings = _settings()
    secrets = _check_secrets(settings)

    async def run() -> T:
        from sqlalchemy import select
        from sqlmodel import col

        from shared.models import User

        await m.upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            async with unit_of_work(session_factory(engine)) as session:
                user = (
                    await session.execute(select(User).where(col(User.email) == email.lower().strip()))
                ).scalar_one_or_none()
                if user is None:
                    console.print(f"[red]no account {email}[/red]")
                    raise typer.Exit(1)
                clock = SystemClock()
                service = ApiKeyService(
                    session=session,
                    keyring=KeyRing.from_setting(secrets.key_encryption_keys),
                    clock=clock,
                    auditor=Auditor(clock, ip=None, request_id="cli"),
                )
                return await action(service, user.id)
        finally:
            await engine.dispose()

    return asyncio.run(run())


@apikeys_app.command("create")
def create(
    email: EmailOpt,
    label: Annotated[str, typer.Option(help="A name to recognise the key by.")] = "",
    scope: Annotated[list[str] | None, typer.Option(help="read and/or trade (default both); repeat.")] = None,
    ip: Annotated[list[str] | None, typer.Option(help="Allowed address or network; repeat.")] = None,
) -> None:
    """Create a key: prints the API key and secret once (stdout), never again."""
    from shared.errors import DomainError

    try:
        issued = _with_service(
            email,
            lambda svc, uid: svc.create(
                uid, label=label, scopes=scope or ["read", "trade"], ip_allowlist=ip or []
            ),
        )
    except DomainError as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(2) from exc
    typer.echo(f"id:      {issued.row.id}")
    typer.echo(f"api key: {issued.api_key}")
    typer.echo(f"secret:  {issued.secret}")
    console.print("Store the secret now: it is not shown again.")


@apikeys_app.command("list")
def list_keys(email: EmailOpt) -> None:
    """The account's live keys, one per line, tab-separated (hints only, never a secret)."""
    rows = _with_service(email, lambda svc, uid: svc.list(uid))
    typer.echo("id\tlabel\tkey\tscopes\tip_allowlist\tcreated_at")
    for row in rows:
        allow = ",".join(row.ip_allowlist) or "-"
        typer.echo(
            f"{row.id}\t{row.label or '-'}\t{row.key_hint}\t{row.scopes}\t{allow}\t{row.created_at.isoformat()}"
        )


@apikeys_app.command("revoke")
def revoke(email: EmailOpt, key_id: Annotated[str, typer.Argument(help="The key's id (see list).")]) -> None:
    """Revoke a key: it stops working at once."""
    from shared.errors import NotFound

    try:
        _with_service(email, lambda svc, uid: svc.revoke(uid, key_id))
    except NotFound as exc:
        console.print(f"[red]{exc.detail}[/red]")
        raise typer.Exit(1) from exc
    console.print(f"revoked {key_id}")
