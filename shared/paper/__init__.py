"""The paper exchange's contracts below the services: the gateway's acceptance and the execution worker use the
same market rules and the same ledger.

- ``rules``: per-symbol market rules, Decimal <-> integer (ticks/lots) conversion, ``RuleViolation``.
- ``ledger``: double-entry journal, reservations (``required_reservation``), fees, in-memory ``Ledger``.

Both are compiled with mypyc in one group with the paper exchange (``execution.paper``'s ``book`` and
``exchange``; ``python -m execution.paper.build_accel``). ``_accel`` guards that whole group wherever its
modules live, so it is installed here, by whichever of the two packages is imported first; ``MODE`` says
whether the compiled group or the pure-Python sources are in use.
"""

from . import _accel

MODE = _accel.guard()
