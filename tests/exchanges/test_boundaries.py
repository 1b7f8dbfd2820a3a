"""shared/exchanges is the only product code that imports ccxt, and it imports no service.

tests/ and benchmarks/ are exempt: there ccxt and python-binance play the bots that drive our APIs.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ROOT / "shared" / "exchanges"
SKIP = {".venv", "tests", "benchmarks", "node_modules", ".git", "build", "dist", "test-output"}
SERVICES = ("gateway", "execution", "events", "pricefeed", "tradebridge")


def _python_files() -> Iterator[Path]:
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if not SKIP.intersection(parts) and not any(p.endswith(".egg-info") for p in parts):
            yield path


def imported_modules(source: str) -> set[str]:
    """Every module a source imports: import statements, and importlib.import_module/__import__ of a literal."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def _is(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_checker_sees_every_way_of_importing() -> None:
    for source in (
        "import ccxt",
        "import ccxt.async_support as c",
        "from ccxt import binance",
        "from ccxt.base.errors import BaseError",
        "def f():\n    import ccxt.pro\n",
        "import importlib\nimportlib.import_module('ccxt.async_support')",
        "__import__('ccxt')",
    ):
        assert any(_is(m, "ccxt") for m in imported_modules(source)), source
    assert not any(_is(m, "ccxt") for m in imported_modules("import ccxtish\nfrom shared import ccxt_notes"))


def test_only_the_exchange_adapters_import_ccxt() -> None:
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in _python_files()
        if not path.is_relative_to(ADAPTERS)
        and any(_is(m, "ccxt") for m in imported_modules(path.read_text(encoding="utf-8")))
    )
    assert offenders == [], f"ccxt imported outside shared/exchanges/: {offenders}"


def test_the_adapters_import_no_service() -> None:
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {m}"
        for path in ADAPTERS.rglob("*.py")
        for m in imported_modules(path.read_text(encoding="utf-8"))
        if any(_is(m, s) for s in SERVICES)
    )
    assert offenders == []


def test_only_the_exchange_adapters_import_python_binance() -> None:
    """python-binance (the `binance` package: the user data stream) stays behind the adapter too."""
    offenders = sorted(
        str(path.relative_to(ROOT))
        for path in _python_files()
        if not path.is_relative_to(ADAPTERS)
        and any(_is(m, "binance") for m in imported_modules(path.read_text(encoding="utf-8")))
    )
    assert offenders == [], f"python-binance imported outside shared/exchanges/: {offenders}"
