"""Which paper modules run compiled: the mypyc extensions next to the sources are used only while they match.

Python imports an extension module in preference to its ``.py``, so an extension built before a source edit
would silently run the old code. ``build_accel`` records a digest of the sources it compiled; on first
import of ``shared.paper`` (``execution.paper`` imports it first thing), ``guard`` compares it with the
sources on disk and, on any difference (or with ``TRADEBRIDGE_PURE_PYTHON=1``), routes the imports of the
compiled modules to their ``.py`` files instead. The group spans two packages (the exchange's ``book`` and
``exchange`` in ``execution.paper``, the ``rules`` and ``ledger`` the gateway shares in ``shared.paper``) and
is one library with direct calls between its modules, so it runs compiled as a whole or not at all: one
manifest, one guard, here below the services so the gateway installs it too. Modules are named, never
imported, by this module; it is itself never compiled."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
MODULES: Final = (
    "execution.paper.book",
    "shared.paper.rules",
    "shared.paper.ledger",
    "execution.paper.exchange",
)
MANIFEST: Final = "shared/paper/accel-manifest.json"  # relative to the root
PURE_ENV: Final = "TRADEBRIDGE_PURE_PYTHON"


def source(module: str, root: Path = ROOT) -> Path:
    """The ``.py`` file of a dotted module name under ``root``."""
    return root.joinpath(*module.split(".")).with_suffix(".py")


def folders(root: Path = ROOT, modules: Sequence[str] = MODULES) -> list[Path]:
    """The package directories the group's modules (and so their extensions) live in."""
    return sorted({source(m, root).parent for m in modules})


def extensions(root: Path = ROOT) -> list[Path]:
    return sorted(f for d in folders(root) for f in [*d.glob("*.so"), *d.glob("*.pyd")])


def digest(root: Path = ROOT, modules: Sequence[str] = MODULES) -> dict[str, str]:
    return {m: hashlib.sha256(source(m, root).read_bytes()).hexdigest() for m in modules}


def write_manifest(modules: Sequence[str], root: Path = ROOT) -> None:
    data = {"python": sys.version.split()[0], "sources": digest(root, modules)}
    (root / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def status(root: Path = ROOT) -> str:
    """``absent`` (nothing built), ``current`` (the build matches the sources), ``stale`` (it does not)."""
    if not extensions(root):
        return "absent"
    try:
        data = json.loads((root / MANIFEST).read_text())
        recorded: dict[str, str] = data["sources"]
        if data.get("python") != sys.version.split()[0]:
            return "stale"
        return "current" if recorded and digest(root, list(recorded)) == recorded else "stale"
    except (OSError, ValueError, KeyError, TypeError):
        return "stale"


class _PureFinder(importlib.abc.MetaPathFinder):
    """Resolves each module of the group to its ``.py`` source even when an extension sits next to it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source(fullname, self.root))


def use_pure_python(root: Path = ROOT) -> None:
    if not any(isinstance(f, _PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder(root))


def guard() -> str:
    """Called once, by ``shared.paper``: returns what is in use, ``compiled`` or ``pure``."""
    if os.environ.get(PURE_ENV, "").lower() in ("1", "true", "yes"):
        use_pure_python()
        return "pure"
    state = status()
    if state == "current":
        return "compiled"
    if state == "stale":
        warnings.warn(
            "the compiled paper modules do not match their sources; using pure Python. "
            "Rebuild with: python -m execution.paper.build_accel",
            RuntimeWarning,
            stacklevel=2,
        )
        use_pure_python()
    return "pure"
