"""ruff and mypy as part of the suite (so CI runs them): `ruff check` and `ruff format --check` on the whole
tree, mypy (pyproject's [tool.mypy]) over every service and --strict on the domain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRICT = [
    "execution/paper",
    "shared/paper",
    "pricefeed/domain",
    "shared/bus",
    "shared/security",
    "shared/ratelimit.py",
    "shared/clock.py",
    "shared/orders.py",
    "shared/streams.py",
    "events",
]


def test_ruff_is_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_tree_is_formatted() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_code_base_is_mypy_clean() -> None:
    """Every service under pyproject's [tool.mypy] (files, the strict overrides, unused ignores reported)."""
    out = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_domain_packages_are_mypy_strict_clean() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", *STRICT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
