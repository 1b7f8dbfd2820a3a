"""The compiled paper modules are used only while they match their sources; pure Python otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.paper import _accel

ROOT = Path(__file__).resolve().parents[2]


def _fake_tree(tmp_path: Path) -> Path:
    for m in _accel.MODULES:
        _accel.source(m, tmp_path).parent.mkdir(parents=True, exist_ok=True)
        _accel.source(m, tmp_path).write_text(f"# {m}\n")
    return tmp_path


def test_the_group_spans_both_packages() -> None:
    """rules and ledger live below the services, book and exchange in execution: one group, one guard."""
    assert {_accel.source(m).parent.relative_to(ROOT).as_posix() for m in _accel.MODULES} == {
        "execution/paper",
        "shared/paper",
    }
    assert all(_accel.source(m).exists() for m in _accel.MODULES)


def test_status_absent_current_stale(tmp_path: Path) -> None:
    root = _fake_tree(tmp_path)
    assert _accel.status(root) == "absent"
    (root / "execution/paper/book.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert _accel.status(root) == "stale", "an extension without a manifest is not trusted"
    _accel.write_manifest(_accel.MODULES, root)
    assert _accel.status(root) == "current"
    (root / "shared/paper/ledger.py").write_text("# ledger, edited\n")
    assert _accel.status(root) == "stale", "an edit in the other package of the group counts too"
    _accel.write_manifest(_accel.MODULES, root)
    data = json.loads((root / _accel.MANIFEST).read_text())
    data["python"] = "3.0.0"
    (root / _accel.MANIFEST).write_text(json.dumps(data))
    assert _accel.status(root) == "stale", "built for another interpreter"
    (root / _accel.MANIFEST).write_text("{not json")
    assert _accel.status(root) == "stale"
    (root / "execution/paper/book.cpython-311-x86_64-linux-gnu.so").unlink()
    (root / "shared/paper/paper_accel__mypyc.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert _accel.status(root) == "stale", "an extension in shared/paper alone is found too"


def _imported_files(env_extra: dict[str, str], first: str = "execution.paper") -> dict[str, str]:
    """What a fresh interpreter imports for each module of the group, importing the ``first`` package first (the
    gateway imports only shared.paper; the guard must be in place either way)."""
    code = (
        f"import json, importlib, {first}\n"
        "import execution.paper as p\n"
        f"mods = [importlib.import_module(m) for m in {list(_accel.MODULES)!r}]\n"
        "print(json.dumps({'mode': p.MODE, **{m.__name__: m.__file__ for m in mods}}))\n"
    )
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("first", ["execution.paper", "shared.paper.rules"])
def test_pure_python_on_request(first: str) -> None:
    files = _imported_files({_accel.PURE_ENV: "1"}, first)
    assert files.pop("mode") == "pure"
    assert sorted(files) == sorted(_accel.MODULES)
    assert all(f.endswith(".py") for f in files.values()), files


def test_install_builds_the_compiled_modules_and_they_are_used() -> None:
    """scripts/install compiles the hot path; CI must run the tests against that build."""
    state = _accel.status()
    if state == "absent" and os.environ.get("CI") != "true":
        pytest.skip("no compiled build here (scripts/install makes one; CI requires it)")
    assert state == "current", f"compiled build is {state}: run python -m execution.paper.build_accel"
    for first in ("execution.paper", "shared.paper.rules"):
        files = _imported_files({_accel.PURE_ENV: ""}, first)
        assert files.pop("mode") == "compiled"
        assert sorted(files) == sorted(_accel.MODULES)
        assert all(f.endswith((".so", ".pyd")) for f in files.values()), files


def test_paper_suite_passes_as_pure_python_too() -> None:
    """The suite otherwise runs against the compiled build: run the paper domain tests once more from the
    pure-Python sources, which are what a machine without a compiler (or an edited checkout) runs."""
    if os.environ.get(_accel.PURE_ENV):
        pytest.skip("already pure")
    env = {**os.environ, _accel.PURE_ENV: "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "tests/paper",
            "--deselect",
            "tests/paper/test_accel.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]


def test_a_current_build_is_left_alone() -> None:
    """Every `scripts/test` runs the install: with the build matching its sources it must not touch the
    extensions (rewriting them under running test processes crashed those that loaded them meanwhile)."""
    if _accel.status() != "current":
        pytest.skip("no current compiled build here")
    before = {f: f.stat().st_ino for f in _accel.extensions()}
    out = subprocess.run(
        [sys.executable, "-m", "execution.paper.build_accel"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("up to date"), out.stdout
    assert {f: f.stat().st_ino for f in _accel.extensions()} == before


def test_an_extension_is_put_in_place_by_rename(tmp_path: Path) -> None:
    """A reader that opened the old file keeps reading it whole; the new one appears at once, complete."""
    from execution.paper.build_accel import _install

    dest = tmp_path / "mod.so"
    dest.write_bytes(b"old" * 1000)
    src = tmp_path / "built.so"
    src.write_bytes(b"new" * 1000)
    with dest.open("rb") as reader:
        _install(src, dest)
        assert reader.read() == b"old" * 1000
    assert dest.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []
