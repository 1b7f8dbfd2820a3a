"""GET /api/markets/{symbol}/candles: every interval the price feed stores, and paging through a long range with
start_time/end_time (the answer stays a list, oldest first); bad input is a 422 problem+json. On PostgreSQL and
SQLite, through the app create_app builds, with the candles the feed's backfill stores."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest

from pricefeed.domain.candles import ALL_INTERVALS, Candle, Interval
from pricefeed.domain.history import history_end
from pricefeed.runner import SqlCandleStore
from pricefeed.sources import SyntheticSource
from shared.amounts import plain
from shared.clock import ManualClock
from tests.support.api import Api, running_api_on

pytestmark = pytest.mark.asyncio

NOW = datetime(2026, 12, 3, 11, 7, 31, tzinfo=UTC)
COUNT = 40
URL = "/api/markets/BTCUSDT/candles"


@pytest.fixture(params=["postgresql", "sqlite"])
async def stored(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Api, list[Candle]]]:
    async with running_api_on(
        request.param, pg_url=pg_url, sqlite_dir=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix
    ) as api:
        history = SyntheticSource(["BTCUSDT"], ManualClock(NOW)).history(history_end(NOW), COUNT)
        await SqlCandleStore(api.parts).insert_missing(history)
        yield api, history


def starts(body: list[dict]) -> list[datetime]:
    return [datetime.fromisoformat(c["start"]) for c in body]


async def test_every_interval_is_served_as_stored(stored: tuple[Api, list[Candle]]) -> None:
    api, history = stored
    for iv in ALL_INTERVALS:
        mine = [c for c in history if c.interval == iv]
        r = await api.client.get(URL, params={"interval": str(iv), "limit": 1000})
        assert r.status_code == 200, r.text
        body = r.json()
        assert starts(body) == [c.start for c in mine]
        assert {c["interval"] for c in body} == {str(iv)}
        last = body[-1]
        assert (last["open"], last["close"], last["volume"], last["closed"]) == (
            plain(mine[-1].open),
            plain(mine[-1].close),
            plain(mine[-1].volume),
            mine[-1].closed,
        )
    # Without paging parameters: the most recent `limit`, oldest first (the contract as it was).
    r = await api.client.get(URL, params={"interval": "4h", "limit": 5})
    assert starts(r.json()) == [c.start for c in history if c.interval == Interval.H4][-5:]


async def test_paging_back_with_end_time_walks_the_whole_range_once(stored: tuple[Api, list[Candle]]) -> None:
    api, history = stored
    minutes = [c.start for c in history if c.interval == Interval.M1]
    seen: list[datetime] = []
    page = (await api.client.get(URL, params={"interval": "1m", "limit": 15})).json()
    while page:
        assert len(page) <= 15
        seen = starts(page) + seen
        oldest = page[0]["start"]
        page = (await api.client.get(URL, params={"interval": "1m", "limit": 15, "end_time": oldest})).json()
    assert seen == minutes  # every candle once, no overlap between pages, none missing


async def test_start_time_pages_forward_and_times_may_be_unix_ms(stored: tuple[Api, list[Candle]]) -> None:
    api, history = stored
    hours = [c.start for c in history if c.interval == Interval.H1]
    since = hours[10]
    r = await api.client.get(URL, params={"interval": "1h", "limit": 5, "start_time": since.isoformat()})
    assert starts(r.json()) == hours[10:15]
    ms = int(since.timestamp() * 1000)
    until = int(hours[13].timestamp() * 1000)
    r = await api.client.get(URL, params={"interval": "1h", "start_time": ms, "end_time": until})
    assert starts(r.json()) == hours[10:13]
    naive = since.replace(tzinfo=None).isoformat()  # no offset: UTC
    r = await api.client.get(URL, params={"interval": "1h", "limit": 1, "start_time": naive})
    assert starts(r.json()) == [since]
    r = await api.client.get(
        URL, params={"interval": "1h", "end_time": (hours[0] - timedelta(days=1)).isoformat()}
    )
    assert r.status_code == 200 and r.json() == []
    # Another offset is the same instant; Unix seconds as good as milliseconds; the edges of time are no error.
    plus2 = since.astimezone(timezone(timedelta(hours=2))).isoformat()
    for value in (plus2, str(int(since.timestamp())), f"{since.timestamp():.3f}"):
        r = await api.client.get(URL, params={"interval": "1h", "limit": 1, "start_time": value})
        assert starts(r.json()) == [since], value
    for edge in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "0"):
        r = await api.client.get(URL, params={"interval": "1h", "limit": 1, "start_time": edge})
        assert r.status_code == 200, (edge, r.text)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"interval": "2m"}, "interval"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"start_time": "yesterday"}, "start_time"),
        ({"end_time": "2026-13-01T00:00:00Z"}, "end_time"),
        ({"start_time": "-5"}, "start_time"),  # Unix times are not negative
        ({"end_time": "253402300800000"}, "end_time"),  # past 9999-12-31
        ({"end_time": "1e12"}, "end_time"),
        ({"start_time": "2026-12-03T10:00:00Z", "end_time": "2026-12-03T10:00:00Z"}, None),
        ({"start_time": "2026-12-03T11:00:00Z", "end_time": "2026-12-03T10:00:00+00:00"}, None),
    ],
)
async def test_bad_input_is_a_422_problem(
    stored: tuple[Api, list[Candle]], params: dict[str, str | int], field: str | None
) -> None:
    api, _ = stored
    r = await api.client.get(URL, params=params)
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 422 and body["detail"]
    if field is not None:
        assert any(field in str(e.get("loc", e)) for e in body.get("errors", [])), body
    else:
        assert "start_time must be before end_time" in body["detail"]


async def test_openapi_declares_the_intervals_and_paging(stored: tuple[Api, list[Candle]]) -> None:
    api, _ = stored
    spec = (await api.client.get("/openapi.json")).json()
    op = spec["paths"]["/api/markets/{symbol}/candles"]["get"]
    params = {p["name"]: p for p in op["parameters"]}
    assert {"interval", "limit", "start_time", "end_time"} <= set(params)
    text = str(params["interval"]["schema"])
    assert all(f"'{iv}'" in text for iv in ("1m", "5m", "15m", "1h", "4h", "1d"))
    assert "422" in op["responses"]


async def test_the_testnet_venues_candles_page_the_same_way(stored: tuple[Api, list[Candle]]) -> None:
    """The testnet's candles are kept by its feed in the market data store (pricefeed.testnet_market), not the
    table: the same parameters select from them."""
    api, history = stored
    fifteen = [c for c in history if c.interval == Interval.M15][-30:]
    rows = [
        {
            "symbol": "BTCUSDT",
            "interval": "15m",
            "start": c.start.isoformat(),
            "open": plain(c.open),
            "high": plain(c.high),
            "low": plain(c.low),
            "close": plain(c.close),
            "volume": plain(c.volume),
            "trade_count": None,
            "closed": c.closed,
            "venue": "testnet",
        }
        for c in fifteen
    ]
    await api.parts.market_data.put(
        "candles", "BTCUSDT:15m", {"symbol": "BTCUSDT", "interval": "15m", "candles": rows}, venue="testnet"
    )
    params: dict[str, str | int] = {"interval": "15m", "venue": "testnet", "limit": 10}
    page = (await api.client.get(URL, params=params)).json()
    assert starts(page) == [c.start for c in fifteen[-10:]] and {c["venue"] for c in page} == {"testnet"}
    older = (await api.client.get(URL, params={**params, "end_time": page[0]["start"]})).json()
    assert starts(older) == [c.start for c in fifteen[-20:-10]]
    since = (
        await api.client.get(URL, params={**params, "limit": 3, "start_time": fifteen[5].start.isoformat()})
    ).json()
    assert starts(since) == [c.start for c in fifteen[5:8]]
    r = await api.client.get(
        URL, params={**params, "start_time": page[1]["start"], "end_time": page[0]["start"]}
    )
    assert r.status_code == 422


async def test_the_feeds_writes_land_in_one_statement_throttled_and_closes_always(
    stored: tuple[Api, list[Candle]],
) -> None:
    """SqlCandleStore.upsert_many, as the feed calls it per tick (a candle per interval): the open candles written
    at most once per min_interval_s each, a close always, over the backfilled rows."""
    api, history = stored
    store = SqlCandleStore(api.parts, min_interval_s=3600)
    last = {iv: [c for c in history if c.interval == iv][-1] for iv in (Interval.M5, Interval.D1)}
    start = last[Interval.M5].start + Interval.M5.length  # a bucket after the backfill

    def five(close: str, closed: bool = False) -> Candle:
        return Candle("BTCUSDT", Interval.M5, start, D("1"), D("9"), D("1"), D(close), D("2"), 1, closed)

    day = last[Interval.D1]
    moved = Candle(
        day.symbol, day.interval, day.start, day.open, day.high, D("1"), D("2"), day.volume, 1, False
    )

    async def newest(interval: str) -> dict:
        return (await api.client.get(URL, params={"interval": interval, "limit": 1})).json()[0]

    await store.upsert_many([five("5"), moved])
    assert (await newest("5m"))["close"] == "5" and (await newest("1d"))["close"] == "2"
    await store.upsert_many([five("6")])  # within the interval: not written
    assert (await newest("5m"))["close"] == "5"
    await store.upsert_many([five("7", closed=True)])  # a close always is
    got = await newest("5m")
    assert (got["close"], got["closed"], got["trade_count"]) == ("7", True, 1)


async def test_a_second_backfill_keeps_what_is_stored_and_adds_what_is_missing(
    stored: tuple[Api, list[Candle]],
) -> None:
    """A restart backfills again over the candles the feed stored while it ran: SqlCandleStore.insert_missing
    must not overwrite them (the chart keeps the real history), and must still add candles not stored yet."""
    api, history = stored
    hours = [c for c in history if c.interval == Interval.H1]
    kept = hours[-2]
    other = Candle(
        kept.symbol, kept.interval, kept.start, D("1"), D("2"), D("1"), D("2"), D("3"), 4, kept.closed
    )
    later = Candle(
        kept.symbol,
        kept.interval,
        hours[-1].start + Interval.H1.length,
        D(5),
        D(6),
        D(4),
        D(5),
        D(7),
        1,
        False,
    )
    await SqlCandleStore(api.parts).insert_missing([other, later])
    body = (await api.client.get(URL, params={"interval": "1h", "limit": 1000})).json()
    assert starts(body) == [c.start for c in hours] + [later.start]
    again = next(c for c in body if datetime.fromisoformat(c["start"]) == kept.start)
    assert (again["open"], again["close"], again["volume"]) == (
        plain(kept.open),
        plain(kept.close),
        plain(kept.volume),
    )
    assert (body[-1]["open"], body[-1]["close"]) == ("5", "5")
