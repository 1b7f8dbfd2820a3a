"""The events hub: one per process, one bus reader task, fan-out to per-connection queues.

Why it is shaped like this:
- One reader tails `events.private` and every public market stream in batched fan-out reads, so the bus cost
  does not grow with the number of sockets; each event is encoded to JSON once and shared by all recipients.
- Routing never awaits: an event is offered to each recipient's bounded queue without blocking. A client whose
  queue is full is closed with 4008 (slow consumer) instead of slowing anyone else; each connection has its own
  sender task, and every send has a timeout (a stalled TCP peer is closed with 4008 too).
- Resume is gapless and duplicate-free: while a connection replays its user stream (`range_after`), live private
  events for it are buffered; when the replay is done they are flushed, dropping ids <= the last replayed id,
  in the same synchronous step that switches the connection back to live (no await in between, so nothing can
  slip through). Private events already sent live before the resume bound the replay from above. The reader runs
  behind the streams, so it may route an event the replay already sent, or one at or before the client's resume
  point: a socket never gets a live private event at or below the highest id it was sent or resumed from.
- Stream ids are global (the same in every events process), so a client may resume on any instance.
- A user locked by an admin (`USER_LOCKED` on `users.events`) is signed out at once: their sockets close with
  4401 "signed out", and tokens issued before the lock are refused here for as long as one can live.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from events import protocol as p
from events.metrics import WS_BUS_ERRORS, WS_DISCONNECTS, WS_MESSAGES_SENT, WS_RESUMES
from shared.bus import Bus, BusMessage, BusUnavailable, InvalidStreamId, format_id, parse_id
from shared.clock import Clock
from shared.metrics import WS_CONNECTIONS
from shared.retry import Backoff, reraise_if_cancelled, retry
from shared.streams import (
    POSITION_MARKS,
    PRIVATE_EVENTS,
    PUBLIC_STREAMS,
    USER_EVENTS,
    USER_LOCKED,
    user_stream,
)

log = structlog.get_logger(__name__)
# A failed bus read is retried after 0.05 s, doubling to 2 s, until the bus answers again.
READ_BACKOFF = Backoff(base=0.05, factor=2.0, cap=2.0)

_Id = tuple[int, int]


@dataclass(frozen=True, slots=True)
class HubConfig:
    """Limits of the hub; the defaults suit production, tests shrink them."""

    queue_size: int = 1000  # outgoing messages buffered per connection before it counts as slow
    send_timeout_s: float = 10.0  # one WebSocket send may take this long before the peer counts as stalled
    replay_page: int = 500  # entries per range_after call while resuming
    resume_buffer_max: int = 10_000  # live private events held back per connection during a replay
    read_count: int = 1000  # entries per bus read
    read_block_ms: int = 1000
    symbols: frozenset[str] | None = None  # known symbols for channel validation (None: any well-formed)
    max_connections_per_user: int = 32  # sockets one user may hold in this process (past it: 4429)
    max_message_bytes: int = 64 * 1024  # largest client message parsed (past it: 1009)
    auth_timeout_s: float = 5.0  # deadline for `{"op": "auth"}` on a socket that brought no token
    signed_out_memory_s: float = 86_400.0  # a lock refuses older tokens this long (at least an access TTL)

    def __post_init__(self) -> None:
        if self.queue_size < 2 or self.send_timeout_s <= 0 or self.replay_page < 1:
            raise ValueError("queue_size >= 2, send_timeout_s > 0 and replay_page >= 1 are required")
        if self.max_connections_per_user < 1 or self.max_message_bytes < 1 or self.auth_timeout_s <= 0:
            raise ValueError(
                "max_connections_per_user >= 1, max_message_bytes >= 1, auth_timeout_s > 0 required"
            )


class TooManyConnections(Exception):
    """The user already holds `max_connections_per_user` sockets on this process."""


Sender = Callable[[str], Awaitable[None]]
"""What the hub needs from a socket: send one text frame (may block on a slow peer)."""


class _Outbox:
    """A bounded FIFO with a non-blocking offer (live fan-out) and a paced put (replay)."""

    __slots__ = ("_drained", "_items", "_limit", "_nonempty")

    def __init__(self, limit: int) -> None:
        self._items: deque[str] = deque()
        self._limit = limit
        self._nonempty = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, item: str) -> bool:
        if len(self._items) >= self._limit:
            return False
        self._items.append(item)
        self._nonempty.set()
        if len(self._items) > self._limit // 2:
            self._drained.clear()
        return True

    async def put_paced(self, item: str) -> bool:
        """Wait until the queue is at most half full (replay leaves room for live traffic), then offer."""
        while len(self._items) > self._limit // 2:
            self._drained.clear()
            await self._drained.wait()
        return self.offer(item)

    async def get(self) -> str:
        while not self._items:
            self._nonempty.clear()
            await self._nonempty.wait()
        item = self._items.popleft()
        if len(self._items) <= self._limit // 2:
            self._drained.set()
        return item


@dataclass(eq=False, slots=True)
class Connection:
    """One authenticated socket: its subscriptions, outgoing queue and resume state."""

    user_id: str
    send: Sender
    outbox: _Outbox
    channels: set[str] = field(default_factory=set)
    close_code: int | None = None
    close_reason: str = ""
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    resuming: bool = False
    held: list[tuple[_Id, tuple[str, ...]]] = field(
        default_factory=list
    )  # live private events held in a replay
    live_since: _Id | None = None  # id of the first private event delivered live
    last_sent: _Id | None = None  # highest private event id sent on this socket (live or replayed)
    resumed_from: _Id | None = None  # the client's resume point: it holds every private event up to here
    hold_limit: int = 10_000
    sending_since: float | None = None  # loop time the current send started (None: not sending)
    pending: asyncio.Future[None] | None = None  # an eager send that suspended, being finished by a task
    busy: bool = False  # the sender task holds a frame taken from the queue (nothing may overtake it)

    def request_close(self, code: int, reason: str) -> None:
        """Ask the socket's owner task to close with `code`; the first reason wins."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            WS_DISCONNECTS.labels(reason=reason).inc()
        self.closed.set()

    def enqueue(self, text: str) -> None:
        if self.close_code is not None:
            return
        if (
            self.pending is None
            and not self.busy
            and self.sending_since is None
            and not len(self.outbox)
            and self._send_now(text)
        ):
            return
        if not self.outbox.offer(text):
            self.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")

    def _send_now(self, text: str) -> bool:
        """Send on the dispatcher's own turn when nothing is queued or in flight: a socket send completes
        without suspending unless the transport is paused, so this saves the sender task's wake-up per
        message (the bulk of a 1,000-client broadcast). If the send does suspend, it is finished by a task
        and later messages queue behind it, so order is kept and the dispatcher never waits."""
        coro = cast(Coroutine[Any, Any, None], self.send(text))
        try:
            yielded = coro.send(None)
        except StopIteration:
            WS_MESSAGES_SENT.inc()
            return True
        except Exception:
            self.request_close(p.CLOSE_SLOW_CONSUMER, "send failed")
            return True
        self.sending_since = asyncio.get_running_loop().time()
        self.pending = asyncio.ensure_future(self._finish(coro, yielded))
        return True

    async def _finish(self, coro: Any, yielded: Any) -> None:
        """Drive a send that suspended to completion, as a Task would: wait for the future it yielded (without
        awaiting it: the coroutine's own await already marked it blocking, and awaiting it again raised
        "await wasn't used with future", so every suspended send used to close its socket), then resume the
        coroutine, which reads the future's outcome itself."""
        try:
            while True:
                if asyncio.isfuture(yielded):
                    yielded._asyncio_future_blocking = False  # as Task.__step does
                    await asyncio.wait([yielded])
                else:  # a bare yield: one turn of the loop
                    await asyncio.sleep(0)
                yielded = coro.send(None)
        except StopIteration:
            WS_MESSAGES_SENT.inc()
        except Exception:
            self.request_close(p.CLOSE_SLOW_CONSUMER, "send failed")
        finally:
            coro.close()
            self.sending_since = None
            self.pending = None

    def deliver_private(self, event_id: _Id, *texts: str) -> None:
        """The frames of one private event: one, or a re-mark's POSITION_UPDATEs of this user (one entry)."""
        if self.resuming:
            if len(self.held) >= self.hold_limit:
                self.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")
                return
            self.held.append((event_id, texts))
            return
        self._send_live(event_id, texts)

    def _send_live(self, event_id: _Id, texts: tuple[str, ...]) -> None:
        """Send a live private event unless the client has it: the hub's reader runs behind the streams, so it
        may route an event the replay already read from the user stream, or one at or before the point the
        client resumed from (received from another instance). Live events arrive in id order, so any id at or
        below the highest already sent (or the resume point) is one the client has."""
        if (self.last_sent is not None and event_id <= self.last_sent) or (
            self.resumed_from is not None and event_id <= self.resumed_from
        ):
            return
        if self.live_since is None:
            self.live_since = event_id
        self.last_sent = event_id
        for text in texts:
            self.enqueue(text)

    def finish_resume(self, last_replayed: _Id | None, *, resync: bool = False) -> None:
        """Flush held live events newer than the replay and go live: synchronous, so nothing slips between.
        After RESYNC_REQUIRED the client's resume point means nothing (it reads a snapshot instead)."""
        if resync:
            self.resumed_from = None
        if last_replayed is not None and (self.last_sent is None or last_replayed > self.last_sent):
            self.last_sent = last_replayed
        held, self.held = self.held, []
        for event_id, texts in held:
            self._send_live(event_id, texts)
        self.resuming = False

    async def run_sender(self) -> None:
        """Drain the queue to the socket. The hub's watchdog times each send out (`sending_since`): cheaper
        than a `wait_for` task per message, which matters with thousands of sockets."""
        loop = asyncio.get_running_loop()
        sent = 0
        try:
            while self.close_code is None:
                text = await self.outbox.get()
                self.busy = True
                try:
                    pending = self.pending
                    if pending is not None:  # an eager send suspended: it goes out first
                        await pending
                        if self.close_code is not None:
                            return  # it failed: a frame sent after the lost one would be a gap
                    self.sending_since = loop.time()
                    await self.send(text)
                    self.sending_since = None
                finally:
                    self.busy = False
                sent += 1
                if sent >= 100:
                    WS_MESSAGES_SENT.inc(sent)
                    sent = 0
        finally:
            WS_MESSAGES_SENT.inc(sent)

    def check_stalled(self, now: float, timeout_s: float) -> None:
        if self.sending_since is not None and now - self.sending_since > timeout_s:
            self.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")


class EventsHub:
    """Tails the bus once for the whole process and routes every event to the sockets that may see it."""

    def __init__(self, bus: Bus, clock: Clock, config: HubConfig | None = None) -> None:
        self.bus = bus
        self.clock = clock
        self.config = config or HubConfig()
        self._by_user: dict[str, set[Connection]] = {}
        self._by_channel: dict[str, set[Connection]] = {}
        self._cursors: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.slow_consumer_drops = 0
        self._locked: dict[str, datetime] = {}  # user -> when an admin locked them (tokens before: refused)

    # -- lifecycle --------------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Pin the read position to "now" before returning, so every event published after start is delivered.
        The bus may be down meanwhile (a process restarting while Redis does): wait for it, as the reader does,
        rather than fail the process's start (uvicorn exits when the lifespan fails)."""
        streams = (PRIVATE_EVENTS, USER_EVENTS, *PUBLIC_STREAMS)

        async def positions() -> list[str | None]:
            return [await self.bus.last_id(stream) for stream in streams]

        def failed(exc: BaseException, attempt: int, delay: float) -> None:
            WS_BUS_ERRORS.inc()
            log.warning("events hub: bus unavailable at start; retrying", error=str(exc), retry_in_s=delay)

        ids = await retry(
            positions,
            what="events hub: stream positions",
            backoff=READ_BACKOFF,
            on=BusUnavailable,
            on_retry=failed,
        )
        for stream, last in zip(streams, ids, strict=True):
            self._cursors[stream] = last or "0-0"
        self._task = asyncio.create_task(self._read_loop(), name="events-hub-reader")
        self._watchdog = asyncio.create_task(self._watch_sends(), name="events-hub-watchdog")

    async def stop(self) -> None:
        for task in (self._task, self._watchdog):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watchdog = None
        for conns in list(self._by_user.values()):
            for conn in list(conns):
                conn.request_close(p.CLOSE_GOING_AWAY, "server shutting down")

    @property
    def connection_count(self) -> int:
        return sum(len(c) for c in self._by_user.values())

    # -- connections ------------------------------------------------------------------------------------------

    def connect(self, user_id: str, send: Sender) -> Connection:
        """Register a socket; synchronous, so the per-user cap holds however many connect at once."""
        existing = self._by_user.get(user_id)
        if existing is not None and len(existing) >= self.config.max_connections_per_user:
            raise TooManyConnections(user_id)
        conn = Connection(
            user_id=user_id,
            send=send,
            outbox=_Outbox(self.config.queue_size),
            hold_limit=self.config.resume_buffer_max,
        )
        self._by_user.setdefault(user_id, set()).add(conn)
        WS_CONNECTIONS.inc()
        return conn

    def disconnect(self, conn: Connection) -> None:
        conns = self._by_user.get(conn.user_id)
        if conns is None or conn not in conns:
            return
        conns.discard(conn)
        if not conns:
            del self._by_user[conn.user_id]
        for channel in conn.channels:
            subs = self._by_channel.get(channel)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._by_channel[channel]
        conn.channels.clear()
        if conn.close_code == p.CLOSE_SLOW_CONSUMER:
            self.slow_consumer_drops += 1
        WS_CONNECTIONS.dec()

    def now(self) -> str:
        return self.clock.now().isoformat()

    # -- client operations ------------------------------------------------------------------------------------

    def handle_text(self, conn: Connection, text: str | bytes) -> Awaitable[None] | None:
        """Apply one client message; returns an awaitable for work that must not block the receive loop."""
        op = p.parse_op(text)
        if isinstance(op, str):
            conn.enqueue(p.error_message(self.now(), "BAD_REQUEST", op))
            return None
        if op.op == "ping":
            conn.enqueue(p.control_message("PONG", self.now()))
        elif op.op == "subscribe":
            self._subscribe(conn, op.channels)
        elif op.op == "unsubscribe":
            self._unsubscribe(conn, op.channels)
        elif op.op == "resume":
            assert op.last_event_id is not None
            return self.start_resume(conn, op.last_event_id)
        return None

    def start_resume(self, conn: Connection, last_event_id: str) -> Awaitable[None] | None:
        """Validate the resume point and hold live private events back from now on (synchronously, so none
        slips between this call and the replay); the caller runs the returned replay as a task."""
        if conn.resuming:
            conn.enqueue(p.error_message(self.now(), "RESUME_IN_PROGRESS", "a resume is already running"))
            return None
        try:
            after = parse_id(last_event_id)
        except InvalidStreamId:
            conn.enqueue(
                p.error_message(
                    self.now(), "BAD_EVENT_ID", "last_event_id is not a stream id like '<ms>-<seq>'"
                )
            )
            return None
        conn.resuming = True
        if conn.resumed_from is None or after > conn.resumed_from:
            conn.resumed_from = after
        return self.resume(conn, after)

    def _subscribe(self, conn: Connection, raw: tuple[object, ...]) -> None:
        added: list[str] = []
        for item in raw:
            channel = p.normalize_channel(item, self.config.symbols)
            if isinstance(channel, p.ChannelError):
                conn.enqueue(
                    p.error_message(self.now(), "UNKNOWN_CHANNEL", channel.reason, channel=channel.channel)
                )
                continue
            if channel not in conn.channels and len(conn.channels) >= p.MAX_CHANNELS_PER_CONNECTION:
                conn.enqueue(
                    p.error_message(
                        self.now(), "TOO_MANY_CHANNELS", "subscription limit reached", channel=channel
                    )
                )
                continue
            conn.channels.add(channel)
            self._by_channel.setdefault(channel, set()).add(conn)
            added.append(channel)
        if added:
            conn.enqueue(p.control_message("SUBSCRIBED", self.now(), {"channels": p.dedupe(added)}))

    def _unsubscribe(self, conn: Connection, raw: tuple[object, ...]) -> None:
        removed: list[str] = []
        for item in raw:
            channel = p.normalize_channel(item, self.config.symbols)
            if isinstance(channel, p.ChannelError):
                conn.enqueue(
                    p.error_message(self.now(), "UNKNOWN_CHANNEL", channel.reason, channel=channel.channel)
                )
                continue
            conn.channels.discard(channel)
            subs = self._by_channel.get(channel)
            if subs is not None:
                subs.discard(conn)
                if not subs:
                    del self._by_channel[channel]
            removed.append(channel)
        if removed:
            conn.enqueue(p.control_message("UNSUBSCRIBED", self.now(), {"channels": p.dedupe(removed)}))

    async def resume(self, conn: Connection, after: _Id) -> None:
        """Replay the user's retained private events after `after`, then go live with no gap or duplicate.

        The caller has set `conn.resuming`. Private events already delivered live on this socket (ids >=
        `live_since`) are not replayed again. A resume point no longer retained gets RESYNC_REQUIRED.
        """
        stream = user_stream(conn.user_id)
        upper = conn.live_since
        cursor = after
        last_replayed: _Id | None = None
        replayed = 0
        try:
            while True:
                page = await self.bus.range_after(stream, format_id(cursor), count=self.config.replay_page)
                # Trimming only removes the oldest entries: if the cursor is still retained after the read, the
                # page began right after it. If not, events after the client's position may be lost.
                oldest = await self.bus.first_id(stream)
                if oldest is None or parse_id(oldest) > cursor:
                    if oldest is None and cursor == (0, 0):
                        break  # nothing ever published for this user and the client asked from the start
                    WS_RESUMES.labels(outcome="resync").inc()
                    conn.enqueue(
                        p.control_message(
                            "RESYNC_REQUIRED",
                            self.now(),
                            {"last_event_id": format_id(after), "oldest_retained_id": oldest},
                        )
                    )
                    conn.finish_resume(None, resync=True)
                    return
                done = len(page) < self.config.replay_page
                for msg in page:
                    event_id = parse_id(msg.id)
                    if upper is not None and event_id >= upper:
                        done = True  # from here on already delivered live on this socket
                        break
                    text = _private_text(msg, conn.user_id)
                    if text is not None and not await conn.outbox.put_paced(text):
                        conn.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")
                        return
                    last_replayed = event_id
                    replayed += text is not None
                if done:
                    break
                cursor = parse_id(page[-1].id)
        except asyncio.CancelledError:
            conn.finish_resume(last_replayed)
            raise
        except Exception as exc:  # flushing now would leave a gap: make the client resume again instead
            log.warning("events hub: resume failed", user_id=conn.user_id, error=str(exc))
            WS_RESUMES.labels(outcome="failed").inc()
            conn.request_close(p.CLOSE_TRY_AGAIN, "resume failed; reconnect and resume again")
            return
        WS_RESUMES.labels(outcome="ok").inc()
        conn.enqueue(
            p.control_message(
                "RESUMED",
                self.now(),
                {"replayed": replayed, "last_event_id": format_id(last_replayed) if last_replayed else None},
            )
        )
        conn.finish_resume(last_replayed)

    async def _watch_sends(self) -> None:
        """Close sockets whose current send has taken longer than the send timeout (a stalled peer)."""
        timeout = self.config.send_timeout_s
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            for conns in list(self._by_user.values()):
                for conn in list(conns):
                    conn.check_stalled(now, timeout)

    # -- the reader -------------------------------------------------------------------------------------------

    async def _read_loop(self) -> None:
        def read() -> Awaitable[list[BusMessage]]:
            return self.bus.read(
                self._cursors, count=self.config.read_count, block_ms=self.config.read_block_ms
            )

        def failed(exc: BaseException, attempt: int, delay: float) -> None:
            WS_BUS_ERRORS.inc()
            log.warning("events hub: bus read failed; retrying", error=str(exc), retry_in_s=delay)

        while True:  # the bus reconnects by itself: on errors keep our position and read again
            try:
                # The retrying machinery only once a read failed: a tenacity run around every read was ~4% of
                # the service's CPU at 250 orders/s (issue #16), for reads that almost never fail.
                batch = await read()
            except Exception as exc:
                reraise_if_cancelled(exc)
                failed(exc, 1, 0.0)
                batch = await retry(read, what="events hub: bus read", backoff=READ_BACKOFF, on_retry=failed)
            self.dispatch(batch)

    def dispatch(self, batch: list[BusMessage]) -> None:
        """Route one batch; never awaits, so a slow socket cannot hold up the others."""
        for msg in batch:
            self._cursors[msg.stream] = msg.id
            try:
                if msg.stream == PRIVATE_EVENTS:
                    self._route_private(msg)
                elif msg.stream == USER_EVENTS:
                    self._user_event(msg)
                else:
                    self._route_public(msg)
            except Exception:  # one malformed entry must not stop the feed for everyone
                log.exception("events hub: dropping malformed entry", stream=msg.stream, id=msg.id)

    def _route_private(self, msg: BusMessage) -> None:
        if msg.data.get("type") == POSITION_MARKS:
            self._route_marks(msg)
            return
        user_id = msg.data.get("user_id")
        conns = self._by_user.get(user_id) if isinstance(user_id, str) else None
        if not conns:
            return
        text = _private_text(msg, user_id)  # type: ignore[arg-type]
        if text is None:
            return
        event_id = parse_id(msg.id)
        for conn in list(conns):
            conn.deliver_private(event_id, text)

    def _route_marks(self, msg: BusMessage) -> None:
        """A re-mark's entry (``shared.streams.position_marks``): each connected user gets their own positions
        as POSITION_UPDATE frames, all with the entry's id (delivered together: one private event)."""
        by_user: dict[str, list[str]] = {}
        for mark in (msg.data.get("data") or {}).get("positions") or ():
            user_id = mark.get("user_id")
            if isinstance(user_id, str) and user_id in self._by_user:
                frame = p.event_message("POSITION_UPDATE", msg.id, mark.get("ts"), mark.get("data"))
                by_user.setdefault(user_id, []).append(frame)
        if not by_user:
            return
        event_id = parse_id(msg.id)
        for user_id, frames in by_user.items():
            for conn in list(self._by_user.get(user_id, ())):
                conn.deliver_private(event_id, *frames)

    def _user_event(self, msg: BusMessage) -> None:
        if msg.data.get("type") == USER_LOCKED and isinstance(msg.data.get("user_id"), str):
            self.sign_out(msg.data["user_id"], datetime.fromisoformat(msg.data["ts"]))

    def sign_out(self, user_id: str, locked_at: datetime) -> None:
        """Close the user's sockets with 4401 (the web app's refresh then fails: it shows the login) and refuse
        their tokens issued until `locked_at`; the gateway has revoked their refresh tokens already."""
        horizon = self.clock.now() - timedelta(seconds=self.config.signed_out_memory_s)
        for user, at in list(self._locked.items()):
            if at < horizon:
                del self._locked[user]
        self._locked[user_id] = max(locked_at, self._locked.get(user_id, locked_at))
        for conn in list(self._by_user.get(user_id, ())):
            conn.request_close(p.CLOSE_UNAUTHORIZED, "signed out")

    def signed_out(self, user_id: str, issued_at: datetime) -> bool:
        """Whether a token of `user_id` issued at `issued_at` predates a lock this process has seen."""
        locked_at = self._locked.get(user_id)
        return locked_at is not None and issued_at <= locked_at

    def _route_public(self, msg: BusMessage) -> None:
        found = p.public_channel_of(msg.stream, msg.data)
        if found is None:
            return
        channel, msg_type = found
        conns = self._by_channel.get(channel)
        if not conns:
            return
        text = p.event_message(msg_type, msg.id, msg.data.get("ts"), p.public_data(msg.data), channel=channel)
        for conn in list(conns):
            conn.enqueue(text)


def _private_text(msg: BusMessage, user_id: str) -> str | None:
    data: Mapping[str, Any] = msg.data
    if data.get("user_id") != user_id or not isinstance(data.get("type"), str):
        return None  # never leak another user's event, whatever the stream holds
    return p.event_message(data["type"], msg.id, data.get("ts"), data.get("data"))
