"""The ways a socket may carry its token, and the per-user and per-message limits, against the events app as
`create_events_app` builds it, served by uvicorn on real Redis, with the `websockets` client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from shared.settings import Settings
from tests.events.helpers import Client, Served, client, events_settings, publish_private, serve
from tests.support.eventually import eventually
from tradebridge.app import create_events_app


def _bearer(token: str) -> list[Subprotocol]:
    """`Sec-WebSocket-Protocol: bearer, TOKEN`."""
    return [Subprotocol("bearer"), Subprotocol(token)]


async def test_token_in_the_subprotocol_header(events: Served) -> None:
    """`Sec-WebSocket-Protocol: bearer, TOKEN`: the server selects "bearer" and never echoes the token."""
    token = events.token("alice")
    async with client(events.url, subprotocols=_bearer(token)) as c:
        assert c.ws.subprotocol == "bearer"
        assert c.ws.response is not None
        assert c.ws.response.headers.get_all("Sec-WebSocket-Protocol") == ["bearer"]
        await c.ping()
        sent = await publish_private(events.bus, "alice", n=1)
        assert (await c.wait_for("ORDER_UPDATE"))[0]["id"] == sent


async def test_bad_token_in_the_subprotocol_header_closes_4401(events: Served) -> None:
    async with client(events.url, subprotocols=_bearer("garbage.token.here")) as c:
        assert await c.closed_code() == 4401
        assert c.messages == []


async def test_token_in_the_first_message(events: Served) -> None:
    """No token on the upgrade: `{"op": "auth"}` first; ops sent right behind it are served in order."""
    async with client(events.url) as c:
        await c.send(op="auth", token=events.token("alice"))
        await c.send(op="subscribe", channels=["ticker:BTCUSDT"])
        await c.ping()
        assert [m["type"] for m in c.messages] == ["AUTHENTICATED", "SUBSCRIBED", "PONG"]
        assert c.messages[0]["data"]["expires_at"]
        sent = await publish_private(events.bus, "alice", n=1)
        assert (await c.wait_for("ORDER_UPDATE"))[0]["id"] == sent
        await c.send(op="auth", token=events.token("bob"))  # the socket stays alice's
        error = (await c.wait_for("ERROR"))[0]["data"]
        assert error["message"] == "already authenticated"
        await c.ping()
        assert events.hub.connection_count == 1


@pytest.mark.parametrize(
    "first",
    [
        {"op": "ping"},  # anything before auth
        {"op": "subscribe", "channels": ["ticker:BTCUSDT"]},
        {"op": "auth", "token": "garbage"},
        {"op": "auth"},
        "not json",
    ],
)
async def test_first_message_other_than_a_valid_auth_closes_4401(events: Served, first: object) -> None:
    async with client(events.url) as c:
        await c.ws.send(first if isinstance(first, str) else json.dumps(first))
        assert await c.closed_code() == 4401
        assert c.messages == []
    assert events.hub.connection_count == 0


async def test_no_token_and_no_auth_message_closes_4401_at_the_deadline(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = events_settings(tmp_path, redis_url, redis_prefix, ws_auth_timeout_s=0.3)
    async with serve(create_events_app(settings)) as events, client(events.url) as c:
        assert await c.closed_code(timeout=10) == 4401
        assert c.messages == []
        assert events.hub.connection_count == 0


# -- per-user connection cap ----------------------------------------------------------------------------------


@pytest.fixture
def capped(settings: Settings) -> Settings:
    return settings.model_copy(update={"ws_max_connections_per_user": 3})


async def test_per_user_connection_cap_closes_4429(capped: Settings) -> None:
    async with serve(create_events_app(capped)) as events:
        token = events.token("alice")
        async with (
            client(events.url, token) as a1,
            client(events.url, token) as a2,
            client(events.url, token) as a3,
        ):
            for c in (a1, a2, a3):
                await c.ping()
            async with client(events.url, token) as over:
                assert await over.closed_code() == 4429
                assert over.messages == []
            # The cap counts the socket's user, whatever way it authenticated.
            async with client(events.url) as over:
                await over.send(op="auth", token=token)
                assert await over.closed_code() == 4429
            async with client(events.url, events.token("bob")) as bob:  # other users are not affected
                await bob.ping()
            sent = await publish_private(events.bus, "alice", n=1)
            for c in (a1, a2, a3):  # the refused sockets took nothing from the open ones
                assert (await c.wait_for("ORDER_UPDATE"))[0]["id"] == sent
            await a3.close()
            await eventually(lambda: events.hub.connection_count == 2)
            async with client(events.url, token) as again:  # a freed place can be taken again
                await again.ping()
        await eventually(lambda: events.hub.connection_count == 0)


def test_connection_cap_and_message_limit_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.ws_max_connections_per_user == 32
    assert settings.ws_max_message_bytes == 64 * 1024


# -- inbound message size -------------------------------------------------------------------------------------


def _ping_of(size: int) -> str:
    """A ping op padded to exactly `size` bytes (the hub ignores unknown members)."""
    bare = json.dumps({"op": "ping", "pad": ""})
    return json.dumps({"op": "ping", "pad": "x" * (size - len(bare))})


async def test_message_at_the_limit_is_served_one_byte_over_closes_1009(events: Served) -> None:
    limit = events.hub.config.max_message_bytes
    assert limit == 64 * 1024
    async with client(events.url, events.token("alice")) as c:
        await c.ws.send(_ping_of(limit))
        await c.wait_for("PONG")
        await c.ws.send(_ping_of(limit + 1))
        assert await c.closed_code() == 1009
        assert len(c.of_type("PONG")) == 1  # the oversized ping was never answered
    await eventually(lambda: events.hub.connection_count == 0)


@pytest.mark.parametrize("binary", [False, True])
async def test_ten_megabyte_frame_closes_1009(events: Served, binary: bool) -> None:
    payload = _ping_of(10 * 1024 * 1024)
    async with client(events.url, events.token("alice")) as c:
        await c.ping()
        await c.ws.send(payload.encode() if binary else payload)
        assert await c.closed_code() == 1009
        assert len(c.of_type("PONG")) == 1
    await eventually(lambda: events.hub.connection_count == 0)


async def test_multibyte_text_is_measured_in_bytes(events: Served) -> None:
    limit = events.hub.config.max_message_bytes
    async with client(events.url, events.token("alice")) as c:
        # Fewer characters than the limit, more bytes: "é" is two bytes in UTF-8.
        text = json.dumps({"op": "ping", "pad": "é" * (limit // 2)}, ensure_ascii=False)
        assert len(text) < limit < len(text.encode())
        await c.ws.send(text)
        assert await c.closed_code() == 1009


async def test_oversized_auth_message_closes_1009(events: Served) -> None:
    async with client(events.url) as c:
        await c.send(op="auth", token=events.token("alice"), pad="x" * (70 * 1024))
        assert await c.closed_code() == 1009
    assert events.hub.connection_count == 0


async def test_limits_hold_in_the_embedded_gateway(tmp_path: Path) -> None:
    """`tradebridge up` mounts the same route on the gateway: the same limits, from the same settings."""
    from tradebridge.app import create_app

    settings = events_settings(
        tmp_path, None, "emb:", ws_max_connections_per_user=1, ws_max_message_bytes=2048
    )
    app = create_app(settings, services=("events",))
    async with serve(app) as gw, connect(gw.url, subprotocols=_bearer(gw.token("alice"))) as raw:
        one = Client(raw)
        await one.ping()
        async with client(gw.url, gw.token("alice")) as over:
            assert await over.closed_code() == 4429
        await one.ws.send(_ping_of(2049))
        assert await one.closed_code() == 1009
