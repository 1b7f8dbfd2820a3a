"""Identifiers that sort by creation time (for cursors) and fit Binance's client order id rule."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 lowercase hex chars: 48-bit milliseconds then 80 random bits (ULID-like, valid `newClientOrderId`)."""
    return f"{int(time.time() * 1000):012x}{os.urandom(10).hex()}"
