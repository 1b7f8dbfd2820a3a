"""TradeBridge's paper exchange: pure, synchronous, deterministic domain code (no I/O).

- ``book``: the integer price-time-priority matching book (hot path).
- ``exchange``: ``PaperExchange`` facade (place / cancel / depth / quote) returning immutable reports.
- ``market_maker``: ladder quoting around a reference price, as cancel/place diffs.
- ``quote``: what a quantity would fill at on the current book.

The market rules and the ledger, which the gateway uses too, are below the services in ``shared.paper``.
``book`` and ``exchange`` are compiled with mypyc in one group with those two by ``scripts/install``
(``python -m execution.paper.build_accel``); the same sources run as pure Python when no build is there,
when the build no longer matches the sources (``shared.paper._accel`` checks at import), or with
``TRADEBRIDGE_PURE_PYTHON=1``. ``MODE`` says which is in use. ``shared.paper`` is imported first so its
guard is in place before any module of the group is.
"""

from shared.paper import MODE

__all__ = ["MODE"]
