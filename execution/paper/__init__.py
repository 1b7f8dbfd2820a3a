"""TradeBridge's paper exchange: pure, synchronous, deterministic domain code (no I/O).

- ``rules``: per-symbol market rules, Decimal <-> integer (ticks/lots) conversion, ``RuleViolation``.
- ``book``: the integer price-time-priority matching book (hot path).
- ``errors``: ``RuleViolation``, ``InsufficientBalance``, ``LedgerError`` (re-exported by ``rules``/``ledger``).
- ``ledger``: double-entry journal, reservations (``required_reservation``), in-memory ``Ledger``.
- ``exchange``: ``PaperExchange`` facade (place / cancel / depth / quote) returning immutable reports.
- ``market_maker``: ladder quoting around a reference price, as cancel/place diffs.
- ``quote``: what a quantity would fill at on the current book.

``book``, ``rules``, ``ledger`` and ``exchange`` are compiled with mypyc by ``scripts/install``
(``python -m execution.paper.build_accel``); the same sources run as pure Python when no build is there,
when the build no longer matches the sources (``_accel`` checks at import), or with
``TRADEBRIDGE_PURE_PYTHON=1``. ``MODE`` says which is in use.
"""

from . import _accel

MODE = _accel.guard()
