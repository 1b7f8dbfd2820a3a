"""ruff and mypy as part of the suite (so CI runs them): `ruff check` on the whole tree, `ruff format --check`
on the formatted packages, mypy (pyproject's [tool.mypy]) over every service and --strict on the domain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRICT = [
    "execution/paper",
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


# Formatted with `ruff format`; the rest (execution, pricefeed, shared, tests, benchmarks) join once the
# lead formats them.
FORMATTED = ["gateway", "events", "reconciliation", "tradebridge", "migrations"]


def test_formatted_packages_stay_formatted() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", *FORMATTED],
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
