"""What the Binance-compatible API uses of the gateway's parts, as a Protocol: the adapter depends on these
fields only, not on how the composition root assembles them."""

from __future__ import annotations

from typing import Annotated, Any, Protocol, cast

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus import Bus
from shared.clock import Clock
from shared.marketdata import MarketData
from shared.paper.ledger import FeeSchedule
from shared.paper.rules import MarketRules
from shared.ratelimit import Admission, RateLimiter
from shared.security.crypto import KeyRing
from shared.settings import Settings


class Parts(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def clock(self) -> Clock: ...
    @property
    def sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def read_sessions(self) -> async_sessionmaker[AsyncSession]: ...
    @property
    def keyring(self) -> KeyRing: ...
    @property
    def limiter(self) -> RateLimiter: ...
    @property
    def markets(self) -> dict[str, MarketRules]: ...
    @property
    def fees(self) -> FeeSchedule: ...
    @property
    def market_data(self) -> MarketData: ...
    @property
    def bus(self) -> Bus: ...
    @property
    def relay(self) -> Any: ...
    @property
    def order_admission(self) -> Admission: ...
    @property
    def paper_funded(self) -> set[str]: ...


async def get_parts(request: Request) -> Parts:
    """The process's parts. (The composition root is moving them from ``app.state.runtime`` to
    ``app.state.parts``; either serves.)"""
    state = request.app.state
    return cast(Parts, getattr(state, "parts", None) or state.runtime)


PartsDep = Annotated[Parts, Depends(get_parts)]
