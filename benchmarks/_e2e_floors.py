"""The floors `pipeline_e2e.py` measures TradeBridge against (issue #16), each one uvicorn worker of its own:

- bare: FastAPI + the same pydantic body (`shared.schemas.orders.OrderIn`) + one XADD;
- durable: the same, plus HS256 bearer-token verification exactly as the gateway does it
  (`shared.security.tokens.TokenService`, PyJWT) and ONE asyncpg statement, its own transaction with
  synchronous commit, that inserts the order, reserves the funds only if the free balance covers them and
  writes an outbox row (data-modifying CTEs over the `bench_floor_*` tables of the benchmark database), then
  one XADD. It is the least any design that keeps the durability rules must do per order.

The pipeline floor is the durable floor followed by the two hops a filled order must still take:
- fill: a worker that reads the durable floor's commands in batches (XREADGROUP), fills every order of a
  batch at a fixed price in ONE synchronous-commit statement (order status, balances released and moved,
  a fill row, an outbox row per event), then publishes the batch's ORDER_UPDATEs and acks the commands in one
  Redis round trip. No book, no market maker: the least the durable fill of an accepted order costs;
- fan-out: FastAPI WebSockets (the token checked as the events service checks it) and one reader of the
  event stream sending each ORDER_UPDATE to its user's sockets.

Run as a process: `python benchmarks/_e2e_floors.py bare|durable|fanout PORT` or `... fill`, configured by the
environment (REDIS_URL, JWT_SECRET, FLOOR_DSN). Nothing here runs at import.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, which name objects local
# to the app factories (the bearer dependency), so they must be evaluated where they are written.
import os
import sys
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from shared.schemas.orders import OrderIn  # module level: FastAPI resolves the body annotation here

STREAM = "bench:floor:orders"
EVENTS = "bench:floor:events"
FILL_GROUP = "bench-floor-fill"
FILL_PRICE = Decimal("100000")  # the fill floor's one price (below REF_PRICE: a buy's reservation covers it)
APP_NAME = "tb-durable-floor"  # application_name of its PostgreSQL sessions: how their backends are found
REF_PRICE = Decimal("120000")  # what a market buy reserves per unit (a fixed cap: the floor has no book)
ASSETS = {"BUY": "USDT", "SELL": "BTC"}
FUNDS = {"USDT": Decimal("1000000000000"), "BTC": Decimal("1000000000")}

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_floor_balances (
  user_id TEXT NOT NULL, asset TEXT NOT NULL, free NUMERIC NOT NULL, locked NUMERIC NOT NULL,
  PRIMARY KEY (user_id, asset)
);
CREATE TABLE IF NOT EXISTS bench_floor_orders (
  id TEXT PRIMARY KEY, user_id TEXT NOT NULL, symbol TEXT NOT NULL, side TEXT NOT NULL, type TEXT NOT NULL,
  quantity NUMERIC NOT NULL, price NUMERIC, reserved_asset TEXT NOT NULL, reserved_amount NUMERIC NOT NULL,
  status TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_floor_outbox (
  id BIGSERIAL PRIMARY KEY, topic TEXT NOT NULL, payload JSONB NOT NULL, created_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS bench_floor_fills (
  id BIGSERIAL PRIMARY KEY, order_id TEXT NOT NULL, user_id TEXT NOT NULL, side TEXT NOT NULL,
  price NUMERIC NOT NULL, quantity NUMERIC NOT NULL, ts TIMESTAMPTZ NOT NULL
);
"""

# One statement, one transaction: the order goes in only if the reservation moved a balance, the outbox row
# only if the order went in. Nothing is inserted (0 returned) when the free balance is short.
ACCEPT = """
WITH reserved AS (
  UPDATE bench_floor_balances
     SET free = free - $4::numeric, locked = locked + $4::numeric
   WHERE user_id = $2::text AND asset = $5::text AND free >= $4::numeric
  RETURNING user_id
), placed AS (
  INSERT INTO bench_floor_orders
         (id, user_id, symbol, side, type, quantity, price, reserved_asset, reserved_amount, status, created_at)
  SELECT $1::text, $2::text, $3::text, $6::text, $7::text, $8::numeric, $9::numeric, $5::text, $4::numeric,
         'PENDING', now()
    FROM reserved
  RETURNING id
), queued AS (
  INSERT INTO bench_floor_outbox (topic, payload, created_at)
  SELECT 'orders.commands', $10::jsonb, now() FROM placed
)
SELECT count(*) FROM placed
"""


# One statement, one transaction per batch of commands: every still-pending order of the batch FILLED at $2, its
# reservation released and the trade's assets moved (one balance update per user and asset of the batch), a
# fill row and an outbox row per order. Returns the orders it filled (a command seen twice fills nothing).
FILL = """
WITH filled AS (
  UPDATE bench_floor_orders SET status = 'FILLED'
   WHERE id = ANY($1::text[]) AND status = 'PENDING'
  RETURNING id, user_id, side, quantity, reserved_asset, reserved_amount
), deltas AS (
  SELECT user_id, asset, sum(dfree) AS dfree, sum(dlocked) AS dlocked FROM (
    SELECT user_id, reserved_asset AS asset,
           CASE WHEN side = 'BUY' THEN reserved_amount - quantity * $2::numeric ELSE 0 END AS dfree,
           -reserved_amount AS dlocked
      FROM filled
    UNION ALL
    SELECT user_id, CASE WHEN side = 'BUY' THEN 'BTC' ELSE 'USDT' END,
           CASE WHEN side = 'BUY' THEN quantity ELSE quantity * $2::numeric END, 0
      FROM filled
  ) moves GROUP BY user_id, asset
), moved AS (
  UPDATE bench_floor_balances b SET free = b.free + d.dfree, locked = b.locked + d.dlocked
    FROM deltas d WHERE b.user_id = d.user_id AND b.asset = d.asset
), traded AS (
  INSERT INTO bench_floor_fills (order_id, user_id, side, price, quantity, ts)
  SELECT id, user_id, side, $2::numeric, quantity, now() FROM filled
), queued AS (
  INSERT INTO bench_floor_outbox (topic, payload, created_at)
  SELECT 'events.private',
         jsonb_build_object('type', 'ORDER_UPDATE', 'user_id', user_id,
                            'data', jsonb_build_object('order_id', id, 'status', 'FILLED')),
         now()
    FROM filled
)
SELECT id, user_id FROM filled
"""


def pool_size() -> int:
    """The gateway's own database pool size (its setting's default): the floor gets the same connections."""
    from shared.settings import Settings

    return int(Settings.model_fields["db_pool_size"].default)


def create_bare_app(redis_url: str, stream: str = STREAM) -> Any:
    """FastAPI + the same pydantic body model + one XADD, nothing else."""
    from contextlib import asynccontextmanager

    import orjson
    import redis.asyncio as aioredis
    from fastapi import FastAPI, status

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        # A blocking pool like a careful service would use (redis-py 8's default pool raises past 100 conns).
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=10)
        state["r"] = aioredis.Redis(connection_pool=pool)
        yield
        await state["r"].aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders", status_code=status.HTTP_202_ACCEPTED)
    async def place(body: OrderIn) -> dict[str, str]:
        order_id = uuid.uuid4().hex
        payload = orjson.dumps({"order_id": order_id, **body.model_dump(mode="json")})
        await state["r"].xadd(stream, {"d": payload}, maxlen=100_000, approximate=True)
        return {"order_id": order_id, "status": "PENDING"}

    return app


def create_durable_app(dsn: str, redis_url: str, jwt_secret: str, stream: str = STREAM) -> Any:
    """The bare floor + the gateway's token check + one durable statement (order, reservation, outbox row)."""
    from contextlib import asynccontextmanager

    import asyncpg
    import orjson
    import redis.asyncio as aioredis
    from fastapi import Depends, FastAPI, status
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

    from shared.clock import SystemClock
    from shared.errors import Unauthorized
    from shared.security.tokens import TokenService

    tokens = TokenService(jwt_secret, clock=SystemClock())
    bearer = HTTPBearer(auto_error=False)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        n = pool_size()
        state["pg"] = await asyncpg.create_pool(
            dsn,
            min_size=n,
            max_size=n,
            # Stated, not inherited: the floor's commit waits for its WAL flush whatever the server's default.
            server_settings={"synchronous_commit": "on", "application_name": APP_NAME},
        )
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=10)
        state["r"] = aioredis.Redis(connection_pool=pool)
        yield
        await state["r"].aclose()
        await state["pg"].close()

    app = FastAPI(lifespan=lifespan)

    @app.exception_handler(Unauthorized)
    async def unauthorized(_: Any, exc: Unauthorized) -> JSONResponse:
        return JSONResponse({"title": "Unauthorized", "status": 401}, status_code=401)

    def subject(creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        if creds is None or creds.scheme.lower() != "bearer":
            raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
        return str(tokens.decode_access(creds.credentials).sub)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders", status_code=status.HTTP_202_ACCEPTED, response_model=None)
    async def place(body: OrderIn, user_id: Annotated[str, Depends(subject)]) -> Any:
        order_id = uuid.uuid4().hex
        command = {"kind": "place", "order_id": order_id, "user_id": user_id, **body.model_dump(mode="json")}
        payload = orjson.dumps(command)
        asset = ASSETS[body.side]
        amount = body.quantity * (body.price or REF_PRICE) if body.side == "BUY" else body.quantity
        placed = await state["pg"].fetchval(
            ACCEPT,
            order_id,
            user_id,
            body.symbol,
            amount,
            asset,
            body.side,
            body.type,
            body.quantity,
            body.price,
            payload.decode(),
        )
        if not placed:
            return JSONResponse({"title": "Insufficient balance", "status": 422}, status_code=422)
        await state["r"].xadd(stream, {"d": payload}, maxlen=100_000, approximate=True)
        return {"order_id": order_id, "status": "PENDING"}

    return app


async def run_fill(dsn: str, redis_url: str) -> None:
    """The fill floor's loop: read a batch of commands, fill it in one statement, publish and ack in one trip.
    The consumer group is created by the benchmark before this starts (at the stream's end)."""
    import asyncpg
    import orjson
    import redis.asyncio as aioredis

    pg = await asyncpg.connect(
        dsn, server_settings={"synchronous_commit": "on", "application_name": APP_NAME}
    )
    r = aioredis.from_url(redis_url)
    try:
        while True:
            got = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                await r.xreadgroup(FILL_GROUP, "fill-1", {STREAM: ">"}, count=256, block=1000),
            )
            if not got:
                continue
            entries = got[0][1]
            ids = [sid for sid, _ in entries]
            order_ids = [orjson.loads(fields[b"d"])["order_id"] for _, fields in entries]
            filled = await pg.fetch(FILL, order_ids, FILL_PRICE)
            pipe = r.pipeline(transaction=False)
            for row in filled:
                event = {"type": "ORDER_UPDATE", "user_id": row["user_id"]}
                event["data"] = {"order_id": row["id"], "status": "FILLED", "price": str(FILL_PRICE)}
                pipe.xadd(EVENTS, {"d": orjson.dumps(event)}, maxlen=100_000, approximate=True)
            pipe.xack(STREAM, FILL_GROUP, *ids)
            await pipe.execute()
    finally:
        await r.aclose()
        await pg.close()


def create_fanout_app(redis_url: str, jwt_secret: str) -> Any:
    """WebSockets by user (the token checked on the upgrade) and one reader of the event stream."""
    import asyncio
    from contextlib import asynccontextmanager

    import orjson
    import redis.asyncio as aioredis
    from fastapi import FastAPI, WebSocket, WebSocketDisconnect

    from shared.clock import SystemClock
    from shared.errors import Unauthorized
    from shared.security.tokens import TokenService

    tokens = TokenService(jwt_secret, clock=SystemClock())
    sockets: dict[str, set[WebSocket]] = {}

    async def read(r: Any) -> None:
        last = "$"
        while True:
            got = await r.xread({EVENTS: last}, count=500, block=1000)
            if not got:
                continue
            for sid, fields in got[0][1]:
                last = sid
                event = orjson.loads(fields[b"d"])
                frame = orjson.dumps({"type": event["type"], "data": event["data"]}).decode()
                for ws in list(sockets.get(event["user_id"], ())):
                    try:
                        await ws.send_text(frame)
                    except Exception:
                        sockets.get(event["user_id"], set()).discard(ws)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        r = aioredis.from_url(redis_url)
        reader = asyncio.create_task(read(r))
        yield
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await r.aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, token: str = "") -> None:
        try:
            user_id = str(tokens.decode_access(token).sub)
        except Unauthorized:
            await websocket.close(code=4401)
            return
        await websocket.accept()
        sockets.setdefault(user_id, set()).add(websocket)
        try:
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            sockets[user_id].discard(websocket)

    return app


async def create_fill_group(redis_url: str) -> None:
    """The fill floor's consumer group at the command stream's end: it fills only what comes after."""
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    try:
        await r.xgroup_create(STREAM, FILL_GROUP, id="$", mkstream=True)
    finally:
        await r.aclose()


async def prepare_database(dsn: str, user_ids: list[str]) -> None:
    """The floor's tables in the benchmark database, and funds for every user (so no order is refused)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(SCHEMA)
        await conn.executemany(
            "INSERT INTO bench_floor_balances (user_id, asset, free, locked) VALUES ($1, $2, $3, 0) "
            "ON CONFLICT (user_id, asset) DO UPDATE SET free = excluded.free, locked = 0",
            [(u, asset, amount) for u in user_ids for asset, amount in FUNDS.items()],
        )
    finally:
        await conn.close()


def mint_users(jwt_secret: str, n: int) -> list[dict[str, str]]:
    """Users of the floors: ids and access tokens signed as the gateway signs them (the floors keep no users)."""
    from shared.clock import SystemClock
    from shared.security.tokens import TokenService

    tokens = TokenService(jwt_secret, clock=SystemClock(), access_ttl_s=7200)
    out = []
    for _ in range(n):
        user_id = uuid.uuid4().hex
        out.append(
            {
                "id": user_id,
                "email": f"{user_id}@floor.invalid",
                "token": tokens.issue_access(user_id, "user").token,
            }
        )
    return out


def serve(kind: str, port: int) -> None:
    """One uvicorn worker, as the gateway runs (uvloop and httptools where installed, no access log)."""
    import uvicorn

    from tradebridge.cli import WS_IMPLEMENTATION

    redis_url = os.environ["REDIS_URL"]
    if kind == "bare":
        app = create_bare_app(redis_url)
    elif kind == "fanout":
        app = create_fanout_app(redis_url, os.environ["JWT_SECRET"])
    else:
        app = create_durable_app(os.environ["FLOOR_DSN"], redis_url, os.environ["JWT_SECRET"])
    config = uvicorn.Config(  # the WebSocket protocol TradeBridge's services serve with
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, ws=WS_IMPLEMENTATION
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    if sys.argv[1] == "fill":
        import uvloop

        uvloop.run(run_fill(os.environ["FLOOR_DSN"], os.environ["REDIS_URL"]))
    else:
        serve(sys.argv[1], int(sys.argv[2]))
