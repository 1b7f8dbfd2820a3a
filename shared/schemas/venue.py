"""The answer of `GET /api/venue-status`: can the user's venue be reached, and are their updates pushed."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class VenueStatusOut(BaseModel):
    mode: Literal["paper", "testnet"]
    reachable: bool | None = Field(
        description="Whether the exchange answered the latest call; null before any call. Paper: always true."
    )
    last_reached_at: datetime | None = Field(
        description="When the exchange last answered (UTC); null if never (and for paper, which is local)."
    )
    stream: Literal["up", "down", "polling"] | None = Field(
        description="testnet: `up` orders and balances are pushed over the user data stream; `down` the stream "
        "is not subscribed now (updates come by polling, late); `polling` no stream is configured. Paper: null."
    )
