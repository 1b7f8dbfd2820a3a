"""Which paper modules run compiled: the mypyc extensions next to the sources are used only while they match.

Python imports an extension module in preference to its ``.py``, so an extension built before a source edit
would silently run the old code. ``build_accel`` records a digest of the sources it compiled; at package
import, ``guard`` compares it with the sources on disk and, on any difference (or with
``TRADEBRIDGE_PURE_PYTHON=1``), routes the imports of the compiled modules to their ``.py`` files instead.
This module itself is never compiled."""

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

HERE: Final = Path(__file__).resolve().parent
MODULES: Final = ("book", "rules", "ledger", "exchange")
MANIFEST: Final = "accel-manifest.json"
PURE_ENV: Final = "TRADEBRIDGE_PURE_PYTHON"


def extensions(folder: Path = HERE) -> list[Path]:
    return sorted([*folder.glob("*.so"), *folder.glob("*.pyd")])


def digest(folder: Path = HERE, modules: Sequence[str] = MODULES) -> dict[str, str]:
    return {m: hashlib.sha256((folder / f"{m}.py").read_bytes()).hexdigest() for m in modules}


def write_manifest(modules: Sequence[str], folder: Path = HERE) -> None:
    data = {"python": sys.version.split()[0], "sources": digest(folder, modules)}
    (folder / MANIFEST).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def status(folder: Path = HERE) -> str:
    """``absent`` (nothing built), ``current`` (the build matches the sources), ``stale`` (it does not)."""
    if not extensions(folder):
        return "absent"
    try:
        data = json.loads((folder / MANIFEST).read_text())
        recorded: dict[str, str] = data["sources"]
        if data.get("python") != sys.version.split()[0]:
            return "stale"
        return "current" if recorded and digest(folder, list(recorded)) == recorded else "stale"
    except (OSError, ValueError, KeyError, TypeError):
        return "stale"


class _PureFinder(importlib.abc.MetaPathFinder):
    """Resolves ``execution.paper.<module>`` to its ``.py`` source even when an extension sits next to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != __package__ or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, self.folder / f"{name}.py")


def use_pure_python(folder: Path = HERE) -> None:
    if not any(isinstance(f, _PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _PureFinder(folder))


def guard() -> str:
    """Called once by the package: returns what is in use, ``compiled`` or ``pure``."""
    if os.environ.get(PURE_ENV, "").lower() in ("1", "true", "yes"):
        use_pure_python()
        return "pure"
    state = status()
    if state == "current":
        return "compiled"
    if state == "stale":
        warnings.warn(
            "the compiled paper exchange modules do not match their sources; using pure Python. "
            "Rebuild with: python -m execution.paper.build_accel",
            RuntimeWarning,
            stacklevel=2,
        )
        use_pure_python()
    return "pure"
