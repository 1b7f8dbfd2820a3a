"""The events service: the parts it needs (`EventsParts`), the hub it starts, and the `/ws` route.

Standalone (`tradebridge events`): `create_events_app(parts)` serves `/ws` and `/healthz`; the composition root
hands it an async context manager producing the parts (`tradebridge.app.create_events_app(settings)`).
Embedded (`tradebridge up`, the gateway): the composition root starts the hub with `start_events` and mounts
the same route with `install_events(app)` after `attach_hub`.

Liveness of peers is uvicorn's WebSocket ping (`ws_ping_interval`/`ws_ping_timeout`, set in the CLI's server
config): a peer that does not answer a ping in time is dropped, and the hub forgets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI

from events.binance_ws import BinanceWsParts, attach_binance_ws, install_binance_ws
from events.hub import EventsHub, HubConfig
from events.ws import EventsState, router
from shared.bus import Bus
from shared.clock import Clock
from shared.security.tokens import TokenService
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class EventsParts:
    """All the events service uses: no relay, no exchange, and no database but the API key store's read-only
    sessions of the Binance-compatible WebSocket (`binance`; its engine connects only to check a signature)."""

    settings: Settings
    clock: Clock
    bus: Bus
    tokens: TokenService
    binance: BinanceWsParts | None = None


def hub_config_for(settings: Settings, **overrides: Any) -> HubConfig:
    values: dict[str, Any] = {
        "symbols": frozenset(settings.symbols),
        "max_connections_per_user": settings.ws_max_connections_per_user,
        "max_message_bytes": settings.ws_max_message_bytes,
        "auth_timeout_s": settings.ws_auth_timeout_s,
    }
    return HubConfig(**{**values, **overrides})


async def start_events(
    parts: EventsParts, stack: AsyncExitStack, config: HubConfig | None = None
) -> EventsHub:
    """Start one hub tailing the bus; it stops when the stack closes."""
    hub = EventsHub(parts.bus, parts.clock, config or hub_config_for(parts.settings))
    await hub.start()
    stack.push_async_callback(hub.stop)
    return hub


def attach_hub(app: FastAPI, parts: EventsParts, hub: EventsHub) -> None:
    """What `/ws` reads on each connection: this process's hub and token service."""
    app.state.events = EventsState(hub=hub, tokens=parts.tokens, bus=parts.bus, clock=parts.clock)
    if parts.binance is not None:
        attach_binance_ws(app, parts.binance, hub)


def install_events(app: FastAPI) -> None:
    """Mount `/ws` and the Binance-compatible WebSocket paths on an app whose lifespan calls `attach_hub`."""
    app.include_router(router)
    install_binance_ws(app)


def create_events_app(
    parts: Callable[[], AbstractAsyncContextManager[EventsParts]], *, hub_config: HubConfig | None = None
) -> FastAPI:
    """The standalone events service; any number may run at once (each tails the bus itself)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with parts() as p, AsyncExitStack() as stack:
            attach_hub(app, p, await start_events(p, stack, hub_config))
            yield

    app = FastAPI(
        title="TradeBridge events", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        state: EventsState | None = getattr(app.state, "events", None)
        return {"status": "ok", "connections": state.hub.connection_count if state else 0}

    install_events(app)
    return app
