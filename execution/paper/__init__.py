"""TradeBridge's paper exchange: pure, synchronous, deterministic domain code (no I/O).

- ``rules``: per-symbol market rules, Decimal <-> integer (ticks/lots) conversion, ``RuleViolation``.
- ``book``: the integer price-time-priority matching book (hot path).
- ``errors``: ``RuleViolation``, ``InsufficientBalance``, ``LedgerError`` (re-exported by ``rules``/``ledger``).
- optional mypyc build of ``book``, ``rules``, ``ledger``, ``exchange``: ``python -m execution.paper.build_accel``
  (pure-Python fallback when not built; rebuild or ``--clean`` after editing those modules).
- ``ledger``: double-entry journal, reservations (``required_reservation``), in-memory ``Ledger``.
- ``exchange``: ``PaperExchange`` facade (place / cancel / depth / quote) returning immutable reports.
- ``market_maker``: ladder quoting around a reference price, as cancel/place diffs.
- ``quote``: what a quantity would fill at on the current book.
"""
