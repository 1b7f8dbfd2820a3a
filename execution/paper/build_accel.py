"""Accelerated build: compile the hot path (``book``, ``rules``, ``ledger``, ``exchange``) with mypyc.

    .venv/bin/python -m execution.paper.build_accel          # build the extensions next to the sources
    .venv/bin/python -m execution.paper.build_accel --clean  # remove them (back to pure Python)
    .venv/bin/python -m execution.paper.build_accel --only book   # the matching book alone

``scripts/install`` runs it (skip with ``TRADEBRIDGE_NO_ACCEL=1``). Python imports a compiled extension in
preference to its ``.py``; the build records a digest of the sources it compiled
(``shared/paper/accel-manifest.json``) and the modules use the extensions only while the sources still
match (see ``shared.paper._accel``), so an edit never runs stale code: it runs pure Python, with a warning,
until the next build. One group spans two packages: ``execution/paper`` (``book``, ``exchange``) and
``shared/paper`` (``rules``, ``ledger``, which the gateway uses too). Needs a C compiler, the Python headers
and mypy (the ``accel`` extra); the build (about a minute on two cores) runs in a temporary directory and
copies only the ``.so`` files in: one shim per module next to its source plus the group's library
``shared/paper/paper_accel__mypyc`` (below the services, so execution's shims import it, never the reverse).
If compilation fails nothing is copied and the pure-Python modules stay in use. The ``.so`` files and the
manifest are not committed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from shared.paper import _accel

ROOT = _accel.ROOT
MODULES = _accel.MODULES
SHORT = {m.rpartition(".")[2]: m for m in MODULES}  # "book" -> "execution.paper.book"
GROUP = "shared.paper.paper_accel"
LEGACY = (
    "execution/paper/accel-manifest.json",
)  # written by builds before rules and ledger moved to shared/

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
    for name in (_accel.MANIFEST, *LEGACY):
        (ROOT / name).unlink(missing_ok=True)


def compiled_modules() -> list[str]:
    """The group's modules (short names) that are currently imported from a compiled extension."""
    import importlib

    names = []
    for short, m in SHORT.items():
        mod = importlib.import_module(m)
        if str(mod.__file__).endswith((".so", ".pyd")):
            names.append(short)
    return names


def _package_dirs() -> list[Path]:
    """The group's packages, relative to the root (``execution/paper``, ``shared/paper``)."""
    return [d.relative_to(ROOT) for d in _accel.folders()]


def _shared_imports() -> list[Path]:
    """The ``shared`` modules the group's packages import (``from shared.x import ...``), and theirs in turn,
    as paths relative to the root: the build tree needs them for mypy (they are plain dependencies, not
    compiled). Found, not listed, so a new import (or a definition moved to shared/) does not break the
    build. The group's own packages are copied whole; another package gets an empty stand-in."""

    def imports(text: str) -> set[str]:
        return set(re.findall(r"^\s*(?:from|import) (shared(?:\.\w+)+)", text, flags=re.MULTILINE))

    packages = set(_package_dirs())
    found: set[Path] = set()
    todo = [name for d in packages for f in (ROOT / d).glob("*.py") for name in imports(f.read_text())]
    while todo:
        rel = Path(*todo.pop().split("."))
        if rel in packages or rel.parent in packages:
            continue
        file = rel / "__init__.py" if (ROOT / rel).is_dir() else rel.with_suffix(".py")
        if file in found:
            continue
        found.add(file)
        if (ROOT / file).exists() and file.name != "__init__.py":
            todo.extend(imports((ROOT / file).read_text()))
    return sorted(found)


def _tree(tmp: Path) -> None:
    """The build tree: the group's packages whole (but this script), the shared modules they import, and an
    ``__init__.py`` for every package on the way."""
    for d in _package_dirs():
        (tmp / d).mkdir(parents=True)
        for f in (ROOT / d).glob("*.py"):
            if f.name != "build_accel.py":
                shutil.copy(f, tmp / d / f.name)
    for rel in _shared_imports():
        src = ROOT / rel
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.name == "__init__.py" or not src.exists():  # a package outside the group: an empty stand-in
            (tmp / rel).write_text("")
        else:
            shutil.copy(src, tmp / rel)
    for d in [p for f in tmp.rglob("*.py") for p in f.relative_to(tmp).parents if p != Path(".")]:
        init = tmp / d / "__init__.py"
        if not init.exists():
            init.write_text(
                (ROOT / d / "__init__.py").read_text() if (ROOT / d / "__init__.py").exists() else ""
            )


def _install(src: Path, dest: Path) -> None:
    """Put an extension in place by rename: a process importing it meanwhile sees the old file or the new
    one, never a half-written one (copying over it in place crashed test processes that loaded it)."""
    part = dest.with_name(f".{dest.name}.part")
    shutil.copy(src, part)
    os.replace(part, dest)


def build(modules: Sequence[str] = MODULES) -> list[Path]:
    """Compile ``modules`` (dotted names) and put the extensions in place; raises ``CalledProcessError`` if
    the build fails."""
    (ROOT / _accel.MANIFEST).unlink(missing_ok=True)  # stale until the new set is complete: pure Python
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        _tree(tmp)
        paths = [_accel.source(m, Path()).as_posix() for m in modules]
        group = GROUP if len(modules) > 1 else modules[0]
        (tmp / "setup.py").write_text(_SETUP.format(paths=paths, group=group))
        subprocess.run([sys.executable, "setup.py"], cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        sources = _accel.digest(tmp, modules)
        new: set[Path] = set()
        for d in _package_dirs():
            for f in [*(tmp / d).glob("*.so"), *(tmp / d).glob("*.pyd")]:
                _install(f, ROOT / d / f.name)
                new.add(ROOT / d / f.name)
    for old in set(built()) - new:  # left by an earlier build of other modules
        old.unlink()
    for legacy in LEGACY:
        (ROOT / legacy).unlink(missing_ok=True)
    _accel.write_manifest(modules)
    if _accel.digest(ROOT, modules) != sources:  # a source changed while it compiled
        clean()
        raise RuntimeError("sources changed during the build; run it again")
    return built()


def _recorded() -> set[str]:
    """The modules the current manifest says were compiled (empty if there is none)."""
    try:
        return set(json.loads((ROOT / _accel.MANIFEST).read_text())["sources"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def main() -> None:
    ap = argparse.ArgumentParser(description="compile the paper exchange's hot path with mypyc")
    ap.add_argument("--clean", action="store_true", help="remove the compiled extensions")
    ap.add_argument("--only", nargs="+", choices=list(SHORT), help="compile just these modules")
    ap.add_argument("--force", action="store_true", help="compile even if the build matches the sources")
    args = ap.parse_args()
    if args.clean:
        clean()
        return
    modules = tuple(SHORT[m] for m in args.only) if args.only else MODULES
    if not args.force and _accel.status() == "current" and _recorded() == set(modules):
        print("up to date:", ", ".join(str(f.relative_to(ROOT)) for f in built()))
        return
    files = build(modules)
    print("built:", ", ".join(str(f.relative_to(ROOT)) for f in files))


if __name__ == "__main__":
    main()
