"""Private routing, auth and public channels against a real events server on real Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.clock import ManualClock
from shared.security.tokens import TokenService
from shared.streams import MARKET_CANDLES, MARKET_TICKER
from tests.events.helpers import JWT_SECRET, Served, client, publish_private, publish_public
from tests.support.eventually import eventually


async def test_each_user_sees_only_their_own_events(events: Served) -> None:
    async with (
        client(events.url, events.token("alice")) as alice,
        client(events.url, events.token("bob")) as bob,
    ):
        await alice.ping()
        await bob.ping()
        a1 = await publish_private(events.bus, "alice", n=1)
        b1 = await publish_private(events.bus, "bob", "TRADE", n=2)
        a2 = await publish_private(events.bus, "alice", "BALANCE_UPDATE", n=3)
        await publish_private(events.bus, "carol", n=4)  # nobody connected as carol

        got_a = await alice.wait_for("BALANCE_UPDATE")
        got_b = await bob.wait_for("TRADE")
        await alice.ping()
        await bob.ping()
        private = ("ORDER_UPDATE", "TRADE", "BALANCE_UPDATE", "POSITION_UPDATE")
        assert [(m["type"], m["id"], m["data"]) for m in alice.of_type(*private)] == [
            ("ORDER_UPDATE", a1, {"n": 1}),
            ("BALANCE_UPDATE", a2, {"n": 3}),
        ]
        assert [(m["type"], m["id"], m["data"]) for m in bob.of_type(*private)] == [("TRADE", b1, {"n": 2})]
        assert set(got_a[0]) == {"type", "id", "ts", "data"} and got_b[0]["ts"]


async def test_every_tab_of_a_user_receives(events: Served) -> None:
    token = events.token("alice")
    async with client(events.url, token) as tab1, client(events.url, token) as tab2:
        await tab1.ping()
        await tab2.ping()
        ids = [await publish_private(events.bus, "alice", n=i) for i in range(5)]
        for tab in (tab1, tab2):
            got = await tab.wait_for("ORDER_UPDATE", 5)
            assert [m["id"] for m in got] == ids
    await eventually(lambda: events.hub.connection_count == 0)


async def test_bearer_header_authenticates(events: Served) -> None:
    headers = {"Authorization": f"Bearer {events.token('alice')}"}
    async with client(events.url, additional_headers=headers) as c:
        await c.ping()
        await publish_private(events.bus, "alice", n=1)
        await c.wait_for("ORDER_UPDATE")


async def test_missing_bad_and_expired_tokens_close_4401(events: Served) -> None:
    past = ManualClock(datetime.now(UTC) - timedelta(hours=1))
    expired = TokenService(JWT_SECRET, access_ttl_s=60, clock=past).issue_access("alice", "user").token
    forged = (
        TokenService("another-secret-" + "y" * 32, clock=events.runtime.clock)
        .issue_access("alice", "user")
        .token
    )
    for token in ("garbage", expired, forged):  # no token at all: test_auth_and_limits (the auth deadline)
        async with client(events.url, token) as c:
            assert await c.closed_code() == 4401, token
            assert c.messages == []
    headers = {"Authorization": "Bearer nope"}
    async with client(events.url, additional_headers=headers) as c:
        assert await c.closed_code() == 4401
    assert events.hub.connection_count == 0


async def test_token_expiring_while_connected_closes_4401(events: Served) -> None:
    async with client(events.url, events.token("alice", ttl_s=1)) as c:
        await c.ping()
        assert await c.closed_code(timeout=5) == 4401
    await eventually(lambda: events.hub.connection_count == 0)


async def test_public_channels_subscribe_and_unsubscribe(events: Served) -> None:
    async with (
        client(events.url, events.token("alice")) as c,
        client(events.url, events.token("bob")) as other,
    ):
        await c.send(op="subscribe", channels=["ticker:btc/usdt", "candles:BTCUSDT:1m"])
        ack = await c.wait_for("SUBSCRIBED")
        assert ack[0]["data"]["channels"] == ["ticker:BTCUSDT", "candles:BTCUSDT:1m"]
        await other.ping()

        t1 = await publish_public(events.bus, MARKET_TICKER, "TICKER", "BTCUSDT", data={"last": "101.5"})
        await publish_public(events.bus, MARKET_TICKER, "TICKER", "ETHUSDT")  # not subscribed
        await publish_public(events.bus, MARKET_TICKER, "TICKER", "BTCUSDT", venue="testnet")  # another venue
        await publish_public(events.bus, MARKET_CANDLES, "CANDLE", "BTCUSDT", interval="5m")  # other interval
        c1 = await publish_public(events.bus, MARKET_CANDLES, "CANDLE", "BTCUSDT", interval="1m")
        await c.wait_for("CANDLE")
        await c.ping()
        assert [(m["id"], m["channel"], m["data"]) for m in c.of_type("TICKER")] == [
            (t1, "ticker:BTCUSDT", {"last": "101.5", "venue": "paper"})  # entries without a venue are paper's
        ]
        assert [m["id"] for m in c.of_type("CANDLE")] == [c1]
        await other.ping()
        assert other.of_type("TICKER", "CANDLE") == []  # nobody gets channels they did not ask for

        await c.send(op="unsubscribe", channels=["ticker:BTCUSDT"])
        await c.wait_for("UNSUBSCRIBED")
        await publish_public(events.bus, MARKET_TICKER, "TICKER", "BTCUSDT")
        c2 = await publish_public(events.bus, MARKET_CANDLES, "CANDLE", "BTCUSDT", interval="1m")
        await c.wait_for("CANDLE", 2)
        assert [m["id"] for m in c.of_type("TICKER")] == [t1]
        assert c.of_type("CANDLE")[-1]["id"] == c2


async def test_bad_input_gets_error_and_socket_stays_open(events: Served) -> None:
    async with client(events.url, events.token("alice")) as c:
        await c.send(
            op="subscribe", channels=["weather:BTCUSDT", "ticker:NOPE", "candles:BTCUSDT:2m", "depth:ETHUSDT"]
        )
        await c.wait_for("ERROR", 3)
        errors = c.of_type("ERROR")
        assert [e["data"]["channel"] for e in errors] == [
            "weather:BTCUSDT",
            "ticker:NOPE",
            "candles:BTCUSDT:2m",
        ]
        assert all(e["data"]["code"] == "UNKNOWN_CHANNEL" for e in errors)
        assert (await c.wait_for("SUBSCRIBED"))[0]["data"]["channels"] == ["depth:ETHUSDT"]

        await c.ws.send("{not json")
        await c.send(op="fly")
        await c.send(op="subscribe", channels="ticker:BTCUSDT")
        await c.send(op="resume", last_event_id="yesterday")
        await c.wait_for("ERROR", 7)
        codes = [e["data"]["code"] for e in c.of_type("ERROR")[3:]]
        assert codes == ["BAD_REQUEST", "BAD_REQUEST", "BAD_REQUEST", "BAD_EVENT_ID"]
        await c.ping()  # still open and serving
        pong = c.of_type("PONG")[-1]
        assert pong["type"] == "PONG"
    await eventually(lambda: events.hub.connection_count == 0)
