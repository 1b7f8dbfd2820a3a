"""The `tradebridge` command line: run the services, migrate, manage admins and keys."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from shared.logging import configure_logging
from shared.secrets import ConfigError
from shared.settings import Settings
from tradebridge.cli_apikeys import apikeys_app

if TYPE_CHECKING:
    from shared.secrets import Secrets

app = typer.Typer(
    help="TradeBridge: one API for paper trading and the Binance spot testnet.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
admin_app = typer.Typer(help="Manage administrator accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage the encryption of stored exchange keys.", no_args_is_help=True)
app.add_typer(admin_app, name="admin")
app.add_typer(keys_app, name="keys")
app.add_typer(apikeys_app, name="apikeys")
console = Console(stderr=True, soft_wrap=True)

# uvicorn's sans-I/O WebSocket protocol (websockets' new implementation), named rather than left to "auto",
# which picked websockets' deprecated legacy protocol before uvicorn 0.35: the same keepalive, size limit and
# flow control, less CPU per frame (benchmarks/ws_fanout.py, docs/performance.md). Tests and the benchmarks'
# floors serve with it too.
WS_IMPLEMENTATION = "websockets-sansio"

HostOpt = Annotated[str | None, typer.Option(help="Interface to bind (default: HOST or 127.0.0.1).")]
PortOpt = Annotated[int | None, typer.Option(help="Port (default: PORT or 8000).")]


def _settings() -> Settings:
    try:
        settings = Settings()
    except Exception as exc:  # pydantic's message names the variable
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    configure_logging(
        production=settings.is_production, level=settings.log_level, access_log=settings.access_log
    )
    return settings


def _serve(app_obj: object, settings: Settings, host: str | None, port: int | None) -> None:
    import uvicorn

    config = uvicorn.Config(
        app_obj,  # type: ignore[arg-type]
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,  # our handler (shared.logging), which redacts tokens in uvicorn's lines too
        access_log=settings.access_log,
        proxy_headers=settings.trusted_proxies,
        ws_ping_interval=20,
        ws_ping_timeout=20,
        ws=WS_IMPLEMENTATION,
        ws_per_message_deflate=False,
        ws_max_size=settings.ws_max_message_bytes,  # larger client frames: 1009 before they are even buffered
    )
    try:
        uvicorn.Server(config).run()
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


@app.command()
def up(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the whole system in one process on one port (the embedded default): migrate, then serve the
    API, the web UI at /, the WebSocket at /ws, the execution worker and the price feed."""
    settings = _settings()
    from tradebridge.embedded import create_embedded_app

    _check_secrets(settings)
    console.print(f"TradeBridge on http://{host or settings.host}:{port or settings.port}  (Ctrl+C stops)")
    _serve(create_embedded_app(settings), settings, host, port)


@app.command()
def gateway(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run the REST API (and web UI) alone; other services run as their own processes."""
    settings = _settings()
    from tradebridge.app import create_app

    _check_secrets(settings)
    _serve(create_app(settings), settings, host, port)


@app.command()
def execution() -> None:
    """Run an execution worker: consumes order commands, trades on the paper exchange or the testnet."""
    settings = _settings()
    _check_secrets(settings)
    from tradebridge.services import run_execution

    _run(run_execution(settings))


@app.command()
def events(host: HostOpt = None, port: PortOpt = None) -> None:
    """Run a WebSocket events service (any number may run at once behind a load balancer)."""
    settings = _settings()
    _check_secrets(settings)
    from tradebridge.app import create_events_app

    _serve(create_events_app(settings), settings, host, port)


@app.command()
def pricefeed() -> None:
    """Run the price feed: tickers, candles, marks and PnL updates."""
    settings = _settings()
    _check_secrets(settings)
    from tradebridge.services import run_pricefeed

    _run(run_pricefeed(settings))


@app.command()
def migrate(
    revision: Annotated[str, typer.Option(help="Target revision.")] = "head",
    downgrade: Annotated[
        bool, typer.Option("--downgrade", help="Downgrade to the revision instead.")
    ] = False,
) -> None:
    """Apply (or roll back) database migrations on DATABASE_URL."""
    settings = _settings()
    from alembic.util import CommandError

    from shared import migrate as m

    try:
        if downgrade:
            asyncio.run(m.downgrade(settings.database_url, revision if revision != "head" else "base"))
        else:
            asyncio.run(m.upgrade(settings.database_url, revision))
    except CommandError as exc:  # a revision that does not exist, ...: the operator's mistake, one line
        console.print(f"[red]migrate:[/red] {exc}")
        raise typer.Exit(2) from exc
    console.print(f"database at {revision if not downgrade else 'downgraded ' + revision}")


@app.command()
def reconcile(
    stuck_after: Annotated[
        float, typer.Option(help="Seconds before a PENDING order counts as stuck.")
    ] = 60.0,
    testnet: Annotated[
        bool, typer.Option("--testnet/--no-testnet", help="Also check testnet accounts.")
    ] = True,
) -> None:
    """Run a reconciliation report now: a progress bar, then a table of checks and mismatches.
    Exits 1 when mismatches were found."""
    settings = _settings()
    _check_secrets(settings)
    from tradebridge.services import run_reconcile

    found = asyncio.run(run_reconcile(settings, console, stuck_after_s=stuck_after, include_testnet=testnet))
    raise typer.Exit(1 if found else 0)


@admin_app.command("create")
def admin_create(
    email: Annotated[str, typer.Option(help="The administrator's email.")],
    password: Annotated[
        str,
        typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, help="Prompted when omitted."),
    ],
) -> None:
    """Create an administrator, or promote an existing account to administrator."""
    settings = _settings()
    from shared.errors import DomainError
    from shared.security.passwords import validate_password

    try:
        validate_password(password)
    except DomainError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc

    async def run() -> str:
        from gateway.services.accounts import ensure_admin
        from shared import migrate as m
        from shared.clock import SystemClock
        from shared.db import create_engine, session_factory

        await m.upgrade(settings.database_url)
        engine = create_engine(settings.database_url)
        try:
            user = await ensure_admin(
                session_factory(engine), SystemClock(), email, password, rounds=settings.bcrypt_rounds
            )
            return user.id
        finally:
            await engine.dispose()

    console.print(f"administrator {email} ready (id {asyncio.run(run())})")


@keys_app.command("rotate")
def keys_rotate() -> None:
    """Re-encrypt every stored exchange key under the first key of KEY_ENCRYPTION_KEYS."""
    settings = _settings()
    secrets = _check_secrets(settings)

    async def run() -> tuple[int, int]:
        from shared.credentials import rotate_all
        from shared.db import create_engine, session_factory, unit_of_work
        from shared.security.crypto import KeyRing

        engine = create_engine(settings.database_url)
        try:
            async with unit_of_work(session_factory(engine)) as session:
                return await rotate_all(session, KeyRing.from_setting(secrets.key_encryption_keys))
        finally:
            await engine.dispose()

    rotated, total = asyncio.run(run())
    console.print(f"re-encrypted {rotated} of {total} stored credentials")


@keys_app.command("generate")
def keys_generate() -> None:
    """Print a new key for KEY_ENCRYPTION_KEYS (put it first to rotate; keep the old ones after it)."""
    from shared.security.crypto import generate_key

    typer.echo(generate_key())


def _run(coro: Any) -> None:
    """Run a service's main coroutine on uvloop when it is installed (as uvicorn does for the HTTP
    services): its socket writes to PostgreSQL and Redis are markedly cheaper than asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        asyncio.run(coro)
        return
    uvloop.run(coro)


def _check_secrets(settings: Settings) -> Secrets:
    from shared.secrets import resolve_secrets

    try:
        return resolve_secrets(settings)
    except ConfigError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
