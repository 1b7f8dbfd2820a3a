"""The events service as its own process (`tradebridge events`), and the hook that embeds it in the gateway.

Standalone: `create_events_app(settings)` builds the runtime, starts one hub, serves `/ws` and `/healthz`.
Embedded (`tradebridge up` / the gateway): pass `events_hook` among the gateway's hooks and call
`install_events(app)` to mount the same `/ws` route:

    app = create_app(settings, migrate=True, hooks=[events_hook])
    install_events(app)

Liveness of peers is uvicorn's WebSocket ping (`ws_ping_interval`/`ws_ping_timeout`, set in the CLI's server
config): a peer that does not answer a ping in time is dropped, and the hub forgets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from fastapi import FastAPI

from events.hub import EventsHub, HubConfig
from events.ws import HUB_KEY, router
from shared.clock import Clock
from shared.settings import Settings
from tradebridge.bootstrap import Runtime, build_runtime


def hub_config_for(settings: Settings, **overrides: Any) -> HubConfig:
    values: dict[str, Any] = {
        "symbols": frozenset(settings.symbols),
        "max_connections_per_user": settings.ws_max_connections_per_user,
        "max_message_bytes": settings.ws_max_message_bytes,
        "auth_timeout_s": settings.ws_auth_timeout_s,
    }
    return HubConfig(**{**values, **overrides})


def make_events_hook(config: HubConfig | None = None) -> Callable[[Runtime, AsyncExitStack], Any]:
    """A gateway service hook that starts the hub in the runtime (and stops it on exit)."""

    async def hook(rt: Runtime, stack: AsyncExitStack) -> None:
        hub = EventsHub(rt.bus, rt.clock, config or hub_config_for(rt.settings))
        await hub.start()
        stack.push_async_callback(hub.stop)
        rt.extras[HUB_KEY] = hub

    return hook


events_hook = make_events_hook()


def install_events(app: FastAPI) -> None:
    """Mount `/ws` on an app whose lifespan runs `events_hook` (the runtime lives in `app.state.runtime`)."""
    app.include_router(router)


def create_events_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    hub_config: HubConfig | None = None,
    runtime_overrides: dict[str, Any] | None = None,
) -> FastAPI:
    """The standalone events service; any number may run at once (each tails the bus itself)."""
    hook = make_events_hook(hub_config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_runtime(settings, clock=clock) as rt, AsyncExitStack() as stack:
            for name, value in (runtime_overrides or {}).items():
                setattr(rt, name, value)
            app.state.runtime = rt
            await hook(rt, stack)
            yield

    app = FastAPI(
        title="TradeBridge events", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        hub: EventsHub | None = getattr(app.state, "runtime", None) and app.state.runtime.extras.get(HUB_KEY)
        return {"status": "ok", "connections": hub.connection_count if hub else 0}

    install_events(app)
    return app
