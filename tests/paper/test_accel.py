"""The compiled paper modules are used only while they match their sources; pure Python otherwise."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from execution.paper import _accel

ROOT = Path(__file__).resolve().parents[2]


def _fake_tree(tmp_path: Path) -> Path:
    for m in _accel.MODULES:
        (tmp_path / f"{m}.py").write_text(f"# {m}\n")
    return tmp_path


def test_status_absent_current_stale(tmp_path: Path) -> None:
    folder = _fake_tree(tmp_path)
    assert _accel.status(folder) == "absent"
    (folder / "book.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
    assert _accel.status(folder) == "stale", "an extension without a manifest is not trusted"
    _accel.write_manifest(_accel.MODULES, folder)
    assert _accel.status(folder) == "current"
    (folder / "ledger.py").write_text("# ledger, edited\n")
    assert _accel.status(folder) == "stale"
    _accel.write_manifest(_accel.MODULES, folder)
    data = json.loads((folder / _accel.MANIFEST).read_text())
    data["python"] = "3.0.0"
    (folder / _accel.MANIFEST).write_text(json.dumps(data))
    assert _accel.status(folder) == "stale", "built for another interpreter"
    (folder / _accel.MANIFEST).write_text("{not json")
    assert _accel.status(folder) == "stale"


def _imported_files(env_extra: dict[str, str]) -> dict[str, str]:
    code = (
        "import json, execution.paper as p\n"
        "from execution.paper import book, exchange, ledger, rules\n"
        "print(json.dumps({'mode': p.MODE, **{m.__name__: m.__file__ for m in (book, exchange, ledger, rules)}}))\n"
    )
    env = {**os.environ, **env_extra}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_pure_python_on_request() -> None:
    files = _imported_files({_accel.PURE_ENV: "1"})
    assert files.pop("mode") == "pure"
    assert all(f.endswith(".py") for f in files.values()), files


def test_install_builds_the_compiled_modules_and_they_are_used() -> None:
    """scripts/install compiles the hot path; CI must run the tests against that build."""
    state = _accel.status()
    if state == "absent" and os.environ.get("CI") != "true":
        pytest.skip("no compiled build here (scripts/install makes one; CI requires it)")
    assert state == "current", f"compiled build is {state}: run python -m execution.paper.build_accel"
    files = _imported_files({_accel.PURE_ENV: ""})
    assert files.pop("mode") == "compiled"
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
