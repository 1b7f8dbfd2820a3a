"""What the execution worker needs from its process, declared here and filled in by the composition root
(`tradebridge.bootstrap`): the worker never builds an adapter nor reaches for one it was not given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus import Bus
from shared.clock import Clock
from shared.marketdata import MarketData
from shared.outbox import OutboxRelay
from shared.paper.ledger import FeeSchedule
from shared.paper.rules import MarketRules
from shared.security.crypto import KeyRing
from shared.settings import Settings


@dataclass(frozen=True, slots=True)
class ExecutionParts:
    settings: Settings
    clock: Clock
    engine: AsyncEngine  # the paper lease (an advisory lock on its own connection)
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]  # testnet keys and users; never write through these
    bus: Bus
    relay: OutboxRelay
    market_data: MarketData
    markets: dict[str, MarketRules]
    fees: FeeSchedule
    keyring: KeyRing  # decrypts testnet keys on demand (shared.credentials)
    testnet_overrides: Mapping[str, Any] = field(default_factory=dict)  # TestnetVenueConfig fields (tests)
