"""Retry delays for failing feeds: the one schedule (shared.retry.Backoff), with equal jitter by default so
many clients never retry in step."""

from __future__ import annotations

from dataclasses import dataclass

from shared import retry


@dataclass(frozen=True, slots=True)
class Backoff(retry.Backoff):
    """Half of each delay fixed (we always back off), half random."""

    jitter: float = 0.5
