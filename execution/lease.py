"""The paper lease: the right to write one partition's books, so each book has one writer across processes.

On PostgreSQL it is a set of advisory locks held on a connection of its own, one per symbol of the partition
(so processes configured with different partition counts still never write one book twice); the locks go
with the connection, so a holder that dies (even `kill -9`) frees its partition at once. On SQLite the
embedded system is one process: the lease is always held.

Which process holds which partition (`EXECUTION_PARTITION`):
- a process takes its own partitions as soon as they are free, and while it waits for one it leaves a claim
  in the market data store (`KIND`, refreshed every poll);
- it takes any other partition only once it has seen it free for `takeover_after_s` (its holder is gone,
  and no process naming it came to take it), so at start each process gets its own first;
- a holder of a partition that is not its own hands it back, between batches, when a fresh claim by another
  process is there: so a process that restarts gets its partitions back from whoever covered for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.clock import Clock
from shared.marketdata import MarketData

log = structlog.get_logger(__name__)

LEASE_CLASS = 0x7450_4150  # "tPAP": the advisory locks' first key; the second is the symbol's
KIND = "paper_claim"  # market data kind of the claims: key "<partition>of<count>"
CLAIM_FRESH = timedelta(seconds=5)  # an older claim was left by a process that gave up or died


def symbol_key(symbol: str) -> int:
    """The advisory lock's second key (a signed 32-bit int, as PostgreSQL's two-key form takes)."""
    k = zlib.crc32(symbol.encode())
    return k - (1 << 32) if k >= 1 << 31 else k


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    partition: int
    partitions: int
    symbols: Sequence[str]
    holder: str  # who holds it, for claims and logs (host-pid)
    own: bool  # one of this process's partitions (EXECUTION_PARTITION)
    poll_s: float = 0.5
    takeover_after_s: float = 2.0


class PaperLease:
    def __init__(
        self,
        config: LeaseConfig,
        engine: AsyncEngine,
        market_data: MarketData,
        clock: Clock,
        *,
        sqlite: bool,
    ) -> None:
        self.config = config
        self.engine = engine
        self.market_data = market_data
        self.clock = clock
        self.sqlite = sqlite
        self.held = False
        self._conn: AsyncConnection | None = None

    @property
    def name(self) -> str:
        return f"{self.config.partition}of{self.config.partitions}"

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Wait until this process holds the partition (True) or `stopping` is set (False)."""
        if self.sqlite:
            self.held = True
            return True
        cfg = self.config
        free_since: float | None = None
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            if cfg.own:
                await self._claim()
                if await self._try_lock():
                    break
            elif await self._claimed_by_other():
                free_since = None
            elif await self._try_lock():
                now = loop.time()
                if free_since is not None and now - free_since >= cfg.takeover_after_s:
                    log.warning("taking over a paper partition left free", partition=self.name)
                    break
                free_since = now if free_since is None else free_since
                await self.release()  # only looking: its own process may still come for it
            else:
                free_since = None
            # asyncio.timeout, not wait_for (Python 3.11's swallows a cancellation that comes as `stopping` is set)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(cfg.poll_s):
                    await stopping.wait()
        else:
            return False
        self.held = True
        log.info("paper lease acquired", partition=self.name, holder=cfg.holder, symbols=list(cfg.symbols))
        return True

    async def keep(self) -> bool:
        """Still held and not to be handed back; otherwise released (the caller rebuilds before taking it
        again). Called between batches, so a hand-back leaves nothing half done."""
        if self.sqlite:
            return True
        if self._conn is None:
            return False
        try:
            await self._conn.execute(text("SELECT 1"))
            await self._conn.commit()
        except Exception:
            log.error("paper lease lost (its connection failed)", partition=self.name)
            await self.release()
            return False
        if not self.config.own and await self._claimed_by_other():
            log.info("handing a paper partition back to its own process", partition=self.name)
            await self.release()
            return False
        return True

    async def release(self) -> None:
        self.held = False
        if self._conn is not None:
            await _unlock_and_close(self._conn)
            self._conn = None

    # -- PostgreSQL ----------------------------------------------------------------------------------------

    async def _try_lock(self) -> bool:
        """All the partition's symbol locks on one new connection, or none."""
        try:
            conn = await self.engine.connect()
        except Exception as exc:
            log.warning("paper lease: database unreachable", error=str(exc))
            return False
        try:
            for symbol in self.config.symbols:
                got = (
                    await conn.execute(
                        text("SELECT pg_try_advisory_lock(:c, :k)"),
                        {"c": LEASE_CLASS, "k": symbol_key(symbol)},
                    )
                ).scalar()
                if not got:
                    await _unlock_and_close(conn)  # none of the partition, then
                    return False
            await conn.commit()
        except Exception:
            await _unlock_and_close(conn)
            raise
        self._conn = conn
        return True

    # -- claims --------------------------------------------------------------------------------------------

    async def _claim(self) -> None:
        try:
            await self.market_data.put(
                KIND, self.name, {"holder": self.config.holder, "ts": self.clock.now().isoformat()}
            )
        except Exception as exc:  # without the store no hand-back: the partition waits for its holder
            log.warning("paper lease claim not recorded", error=str(exc))

    async def _claimed_by_other(self) -> bool:
        try:
            claim = await self.market_data.get(KIND, self.name)
        except Exception:
            return False
        if not claim or claim.get("holder") == self.config.holder:
            return False
        try:
            age = self.clock.now() - datetime.fromisoformat(str(claim["ts"]))
        except (KeyError, ValueError):
            return False
        return age <= CLAIM_FRESH


async def _unlock_and_close(conn: AsyncConnection) -> None:
    """Advisory locks belong to the database session, which outlives `close()` (the connection goes back to
    the pool): unlock them first, or, if the connection cannot, discard it so its session ends."""
    try:
        await conn.execute(text("SELECT pg_advisory_unlock_all()"))
        await conn.commit()
    except Exception:
        with contextlib.suppress(Exception):
            await conn.invalidate()
    with contextlib.suppress(Exception):
        await conn.close()
