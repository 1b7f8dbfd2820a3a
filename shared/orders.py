"""The order status machine of the public contract, shared by the gateway, the worker and the venues."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class Status(StrEnum):
    PENDING = "PENDING"
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    PENDING_CANCEL = "PENDING_CANCEL"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


FINAL: Final = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED})
OPEN: Final = frozenset({Status.NEW, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL})

_ALLOWED: Final[dict[Status, frozenset[Status]]] = {
    Status.PENDING: frozenset(
        {
            Status.NEW,
            Status.PARTIALLY_FILLED,
            Status.FILLED,
            Status.PENDING_CANCEL,
            Status.CANCELED,
            Status.REJECTED,
            Status.EXPIRED,
        }
    ),
    Status.NEW: frozenset(
        {Status.PARTIALLY_FILLED, Status.FILLED, Status.PENDING_CANCEL, Status.CANCELED, Status.EXPIRED}
    ),
    Status.PARTIALLY_FILLED: frozenset(
        {Status.PARTIALLY_FILLED, Status.FILLED, Status.PENDING_CANCEL, Status.CANCELED, Status.EXPIRED}
    ),
    # A cancel can lose the race against fills, or be refused by the venue (back to resting).
    Status.PENDING_CANCEL: frozenset(
        {
            Status.PENDING_CANCEL,
            Status.CANCELED,
            Status.FILLED,
            Status.PARTIALLY_FILLED,
            Status.NEW,
            Status.EXPIRED,
        }
    ),
    Status.FILLED: frozenset(),
    Status.CANCELED: frozenset(),
    Status.REJECTED: frozenset(),
    Status.EXPIRED: frozenset(),
}


class IllegalTransition(ValueError):
    pass


def can_transition(current: str, new: str) -> bool:
    return Status(new) in _ALLOWED[Status(current)]


def check_transition(current: str, new: str) -> None:
    if current == new and current not in (Status.PARTIALLY_FILLED, Status.PENDING_CANCEL):
        raise IllegalTransition(f"order is already {current}")
    if not can_transition(current, new):
        raise IllegalTransition(f"illegal transition {current} -> {new}")


def is_final(status: str) -> bool:
    return Status(status) in FINAL
