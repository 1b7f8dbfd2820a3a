"""Accelerated build: compile the hot path (``book``, ``rules``, ``ledger``, ``exchange``) with mypyc.

    .venv/bin/python -m execution.paper.build_accel          # build the extensions next to the sources
    .venv/bin/python -m execution.paper.build_accel --clean  # remove them (back to pure Python)
    .venv/bin/python -m execution.paper.build_accel --only book   # the matching book alone

``scripts/install`` runs it (skip with ``TRADEBRIDGE_NO_ACCEL=1``). Python imports a compiled extension in
preference to its ``.py``; the build records a digest of the sources it compiled (``accel-manifest.json``)
and the package uses the extensions only while the sources still match (see ``_accel``), so an edit never
runs stale code: it runs pure Python, with a warning, until the next build. Needs a C compiler, the Python
headers and mypy (the ``accel`` extra); the build (about a minute on two cores) runs in a temporary
directory and copies only the ``.so`` files in: one shim per module plus the shared
``paper_accel__mypyc`` library. If compilation fails nothing is copied and the pure-Python modules stay in
use. The ``.so`` files and the manifest are not committed.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from execution.paper import _accel

HERE = _accel.HERE
ROOT = HERE.parents[1]
MODULES = _accel.MODULES
GROUP = "execution.paper.paper_accel"

_SETUP = """
from setuptools import setup
from mypyc.build import mypycify

setup(
    name="paper-accel",
    ext_modules=mypycify({paths!r}, group_name={group!r}, opt_level="3"),
    script_args=["build_ext", "--inplace"],
)
"""


def built() -> list[Path]:
    return _accel.extensions()


def clean() -> None:
    for f in built():
        f.unlink()
    (HERE / _accel.MANIFEST).unlink(missing_ok=True)


def compiled_modules() -> list[str]:
    """The modules of this package that are currently imported from a compiled extension."""
    import importlib

    names = []
    for m in MODULES:
        mod = importlib.import_module(f"execution.paper.{m}")
        if str(mod.__file__).endswith((".so", ".pyd")):
            names.append(m)
    return names


def _shared_imports() -> list[str]:
    """The ``shared`` modules this package's sources import (``from shared.x import ...``), and theirs in turn,
    as file names: the build tree needs them for mypy (they are plain dependencies, not compiled). Found, not
    listed, so a new import (or a definition moved to shared/, as ``errors`` -> ``shared.trading_errors``) does
    not break the build."""

    def imports(text: str) -> set[str]:
        return set(re.findall(r"^\s*(?:from|import) shared\.(\w+)", text, flags=re.MULTILINE))

    found: set[str] = set()
    todo = [name for f in HERE.glob("*.py") for name in imports(f.read_text())]
    while todo:
        name = todo.pop()
        src = ROOT / "shared" / f"{name}.py"
        if name in found:
            continue
        found.add(name)
        if src.exists():  # a package (shared.models, ...) gets an empty stand-in, as before
            todo.extend(imports(src.read_text()))
    return sorted(f"{name}.py" for name in found)


def build(modules: tuple[str, ...] = MODULES) -> list[Path]:
    """Compile ``modules`` and copy the extensions in; raises ``CalledProcessError`` if the build fails."""
    clean()
    with tempfile.TemporaryDirectory() as tmp:
        pkg = Path(tmp) / "execution" / "paper"
        pkg.mkdir(parents=True)
        (pkg.parent / "__init__.py").write_text("")
        for f in HERE.glob("*.py"):
            if f.name != "build_accel.py":
                shutil.copy(f, pkg / f.name)
        shared = Path(tmp) / "shared"
        shared.mkdir()
        for name in ("__init__.py", *_shared_imports()):  # what the package imports from shared/
            src = ROOT / "shared" / name
            (shared / name).write_text(src.read_text() if src.exists() else "")
        paths = [f"execution/paper/{m}.py" for m in modules]
        group = GROUP if len(modules) > 1 else f"execution.paper.{modules[0]}"
        (Path(tmp) / "setup.py").write_text(_SETUP.format(paths=paths, group=group))
        subprocess.run([sys.executable, "setup.py"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        sources = _accel.digest(pkg, modules)
        for f in list(pkg.glob("*.so")) + list(pkg.glob("*.pyd")):
            shutil.copy(f, HERE / f.name)
    _accel.write_manifest(modules)
    if _accel.digest(HERE, modules) != sources:  # a source changed while it compiled
        clean()
        raise RuntimeError("sources changed during the build; run it again")
    return built()


def main() -> None:
    ap = argparse.ArgumentParser(description="compile the paper exchange's hot path with mypyc")
    ap.add_argument("--clean", action="store_true", help="remove the compiled extensions")
    ap.add_argument("--only", nargs="+", choices=MODULES, help="compile just these modules")
    args = ap.parse_args()
    if args.clean:
        clean()
        return
    files = build(tuple(args.only) if args.only else MODULES)
    print("built:", ", ".join(f.name for f in files))


if __name__ == "__main__":
    main()
