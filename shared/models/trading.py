"""Orders, their status history and fills; the paper ledger; the transactional outbox."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint, false
from sqlmodel import Field, SQLModel

from shared.db import Amount, UTCDateTime


class Order(SQLModel, table=True):
    __tablename__ = "orders"
    __table_args__ = (
        UniqueConstraint("user_id", "client_order_id", name="uq_orders_user_client_order_id"),
        Index("ix_orders_user_status", "user_id", "status"),
        Index("ix_orders_user_id_desc", "user_id", "id"),
        Index("ix_orders_mode_status", "mode", "status"),
    )

    id: str = Field(primary_key=True, max_length=36)  # also the venue's client order id
    user_id: str = Field(foreign_key="users.id", max_length=32)
    client_order_id: str | None = Field(default=None, max_length=64)
    request_hash: str = Field(max_length=64)
    mode: str = Field(max_length=16)
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    type: str = Field(
        max_length=32
    )  # MARKET|LIMIT|the four stop types; an external order keeps the exchange's
    time_in_force: str = Field(max_length=3)
    quantity: Decimal = Field(sa_type=Amount)
    price: Decimal | None = Field(default=None, sa_type=Amount)
    status: str = Field(max_length=16)
    filled_quantity: Decimal = Field(default=Decimal(0), sa_type=Amount)
    cumulative_quote: Decimal = Field(default=Decimal(0), sa_type=Amount)
    avg_price: Decimal | None = Field(default=None, sa_type=Amount)
    reason: str | None = Field(default=None, max_length=256)
    # Paper: what acceptance locked (asset, amount, price cap); the worker settles against it.
    reserved_asset: str | None = Field(default=None, max_length=16)
    reserved_amount: Decimal | None = Field(default=None, sa_type=Amount)
    reserved_price_cap: Decimal | None = Field(default=None, sa_type=Amount)
    venue_order_id: str | None = Field(default=None, max_length=64)
    venue_seq: int | None = Field(default=None, sa_type=BigInteger)  # book priority when resting (paper)
    external: bool = Field(default=False)  # found on the exchange, not placed through TradeBridge
    # Stop orders: the trigger price, and when the trigger fired (None while the order waits for it).
    stop_price: Decimal | None = Field(default=None, sa_type=Amount)
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    replaces: str | None = Field(default=None, max_length=36)  # cancel-replace: the order this one replaced
    version: int = Field(default=0)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class OrderEvent(SQLModel, table=True):
    """Status history: one row per change of an order's status or filled quantity."""

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_order", "order_id", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: str = Field(foreign_key="orders.id", max_length=36)
    status: str = Field(max_length=16)
    filled_quantity: Decimal = Field(sa_type=Amount)
    reason: str | None = Field(default=None, max_length=256)
    ts: datetime = Field(sa_type=UTCDateTime)


class Fill(SQLModel, table=True):
    __tablename__ = "fills"
    __table_args__ = (
        UniqueConstraint("order_id", "trade_id", name="uq_fills_order_trade"),
        Index("ix_fills_user_ts", "user_id", "ts"),
    )

    id: int | None = Field(default=None, primary_key=True)
    trade_id: str = Field(max_length=64)
    order_id: str = Field(foreign_key="orders.id", max_length=36)
    user_id: str = Field(max_length=32)
    mode: str = Field(max_length=16)
    symbol: str = Field(max_length=20)
    side: str = Field(max_length=4)
    price: Decimal = Field(sa_type=Amount)
    quantity: Decimal = Field(sa_type=Amount)
    quote_quantity: Decimal = Field(sa_type=Amount)
    fee: Decimal = Field(sa_type=Amount)
    fee_asset: str = Field(max_length=16)
    liquidity: str = Field(max_length=5)  # MAKER | TAKER
    ts: datetime = Field(sa_type=UTCDateTime)


class Balance(SQLModel, table=True):
    """Paper balances: the projection of the ledger journal, one row per (account, asset)."""

    __tablename__ = "balances"

    account_id: str = Field(primary_key=True, max_length=40)
    asset: str = Field(primary_key=True, max_length=16)
    free: Decimal = Field(default=Decimal(0), sa_type=Amount)
    locked: Decimal = Field(default=Decimal(0), sa_type=Amount)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class LedgerPosting(SQLModel, table=True):
    """The double-entry journal: every posting of every entry; balances are its running sum."""

    __tablename__ = "ledger_postings"
    __table_args__ = (Index("ix_ledger_postings_account", "account_id", "asset"),)

    id: int | None = Field(default=None, primary_key=True)
    entry_kind: str = Field(max_length=16)
    ref: str = Field(max_length=64)
    account_id: str = Field(max_length=40)
    asset: str = Field(max_length=16)
    bucket: str = Field(max_length=8)
    amount: Decimal = Field(sa_type=Amount)
    ts: datetime = Field(sa_type=UTCDateTime)


class PaperAccount(SQLModel, table=True):
    """Marks that a user's paper account got its starting deposit (done once, on first use)."""

    __tablename__ = "paper_accounts"

    user_id: str = Field(primary_key=True, max_length=32)
    funded_at: datetime = Field(sa_type=UTCDateTime)


class ProcessedCommand(SQLModel, table=True):
    """Idempotency of the execution worker: a command id is executed once, whatever the redeliveries."""

    __tablename__ = "processed_commands"

    command_id: str = Field(primary_key=True, max_length=64)
    processed_at: datetime = Field(sa_type=UTCDateTime)


class OutboxMessage(SQLModel, table=True):
    """Transactional outbox: written with the state change, published to the bus by a relay afterwards."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    stream: str = Field(max_length=128)
    mirror_to: str | None = Field(default=None, max_length=128)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # Published by its writer right after commit (``OutboxRelay.publish_committed``); relays leave such a row
    # alone until it is older than their grace period (its writer died or the bus was down).
    eager: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    created_at: datetime = Field(sa_type=UTCDateTime)
    published_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
