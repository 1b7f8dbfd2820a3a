"""Retry delays for failing feeds: exponential, capped, jittered so many clients never retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Backoff:
    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("need base > 0, factor >= 1, cap >= base")

    def ceiling(self, attempt: int) -> float:
        """Un-jittered delay before retry number `attempt` (1 = first retry)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        return min(self.cap, self.base * self.factor ** min(attempt - 1, 64))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """'Equal jitter': half the ceiling is fixed (we always back off), half is random."""
        ceiling = self.ceiling(attempt)
        return ceiling / 2 + rng.uniform(0, ceiling / 2)
