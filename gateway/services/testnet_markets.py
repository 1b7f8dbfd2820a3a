"""The testnet's own market rules, for accepting testnet orders by the rules the exchange will apply.

Binance's exchangeInfo (tick size, step size, min/max quantity, min notional) is read through
`shared.exchanges` (ccxt's load_markets) at start and every `refresh_s`, so a testnet order off the exchange's
grid is a 422 at once instead of an order the exchange refuses later. Fallback while the exchange cannot be
read: the rules last loaded from it; before the first load succeeds, the configured rules (MARKET_RULES and the
built-in markets', as paper uses), the exchange still checking every order it is sent. A symbol the exchange
does not list keeps its configured rules too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import datetime

import structlog

from shared.clock import Clock
from shared.exchanges import ExchangeAdapter, ExchangeCallFailed, MarketFilters, SessionOptions
from shared.paper.rules import MarketRules

log = structlog.get_logger(__name__)

RETRY_S = 30.0  # after a failed read, the next try comes this soon (or at the refresh, if sooner), doubling
# per failure in a row up to the refresh: each try builds a ccxt client (an SSL context, a DNS lookup), which an
# offline `tradebridge up` did every 30 s for ever (issue #16)
READ_BOUND = 3  # a whole read (load_markets may make more than one request) within this many request timeouts


def rules_from_filters(f: MarketFilters, configured: MarketRules | None) -> MarketRules:
    """The exchange's filters as our rules; what the exchange does not state (the market-order protection band)
    comes from the configured rules."""
    extra = {"market_protection_pct": configured.market_protection_pct} if configured is not None else {}
    return MarketRules(
        symbol=f.symbol,
        base_asset=f.base_asset,
        quote_asset=f.quote_asset,
        tick_size=f.tick_size,
        step_size=f.step_size,
        min_qty=f.min_qty,
        max_qty=f.max_qty,
        min_notional=f.min_notional,
        min_price=f.min_price,
        **extra,
    )


class TestnetMarkets:
    """The configured symbols' rules on the testnet (`rules`), refreshed from the exchange in the background."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(
        self,
        adapter: ExchangeAdapter,
        configured: Mapping[str, MarketRules],
        clock: Clock,
        *,
        refresh_s: float,
        timeout_ms: int = 10_000,
    ) -> None:
        self._adapter = adapter
        self._configured = dict(configured)
        self._clock = clock
        self._refresh_s = refresh_s
        self._timeout_ms = timeout_ms
        self.rules: dict[str, MarketRules] = dict(configured)
        self.loaded_at: datetime | None = None  # when the exchange's rules were last read; None: configured
        self.last_error: str | None = None  # why the last read failed (None: it succeeded, or none yet)
        self._task: asyncio.Task[None] | None = None

    @property
    def source(self) -> str:
        """``exchange`` once its rules were read, else ``configured``."""
        return "configured" if self.loaded_at is None else "exchange"

    async def refresh(self) -> bool:
        """Read the exchange's rules now; False (the current rules kept) if it cannot be read. The whole read
        (client, requests, closing) is bounded: one that hangs past its bound counts as failed, so the refresher
        neither waits for ever nor leaves `last_error` unset (a CI run once saw no answer for 60 s)."""
        bound_s = READ_BOUND * self._timeout_ms / 1000
        try:
            async with asyncio.timeout(bound_s):
                filters = await self._read()
        except (ExchangeCallFailed, TimeoutError) as exc:
            reason = (
                exc.error.reason if isinstance(exc, ExchangeCallFailed) else f"no answer within {bound_s:g} s"
            )
            self.last_error = reason
            log.warning(
                "testnet market rules not read; keeping the current ones", source=self.source, reason=reason
            )
            return False
        rules = dict(self.rules)
        for symbol, configured in self._configured.items():
            f = filters.get(symbol)
            if f is None:
                continue
            try:
                rules[symbol] = rules_from_filters(f, configured)
            except ValueError as exc:  # rules we cannot use (a zero tick): keep what we had
                log.warning("testnet market rules unusable", symbol=symbol, error=str(exc))
        self.rules = rules
        self.loaded_at, self.last_error = self._clock.now(), None
        return True

    async def _read(self) -> dict[str, MarketFilters]:
        session = self._adapter.session(options=SessionOptions(timeout_ms=self._timeout_ms))
        try:
            return await session.market_filters()
        finally:
            await session.close()

    def retry_after(self, failures: int) -> float:
        """The wait after ``failures`` failed reads in a row: RETRY_S doubling, never past the refresh."""
        return min(self._refresh_s, RETRY_S * 2 ** min(failures - 1, 16))

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                ok = await self.refresh()
            except Exception as exc:  # anything unforeseen: the rules keep being refreshed
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("testnet market rules not read; keeping the current ones")
                ok = False
            failures = 0 if ok else failures + 1
            await asyncio.sleep(self.retry_after(failures) if failures else self._refresh_s)

    def start(self) -> None:
        """Refresh in the background (the first read at once); the configured rules serve until it answers."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="testnet-market-rules")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["TestnetMarkets", "rules_from_filters"]
