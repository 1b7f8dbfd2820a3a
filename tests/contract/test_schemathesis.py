"""Schemathesis against the embedded default: every check, every phase, a fixed seed and a bounded number of
examples per operation. Run it alone with `pytest -m contract`.

The operations are tested in groups, one run each: the coverage phase makes every case the schema defines
(no `max-examples` bounds it), 430 of the 530 s one run over all 61 operations took on a loaded machine,
past the suite's 300 s timeout. Split, the longest group took 63 s (auth and keys: registrations hash
passwords, keys are checked with the exchange) and all five 107 s; together they test every operation once
(test_the_groups_cover_every_operation_once)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.browser.server import RunningSystem

pytestmark = pytest.mark.contract

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20260
MAX_EXAMPLES = 10

# Operations by path (re.search, as schemathesis filters): the Binance-compatible API; admin and orders;
# markets; auth and keys; the rest (the paths none of the others take).
GROUPED = {
    "binance": "^/binance/",
    "admin-orders": "^/api/(admin|orders)",
    "markets": "^/api/markets",
    "auth-keys": "^/(auth/|api/(keys|api-keys))",
}
GROUPS = [*GROUPED, "rest"]
REST = "|".join(GROUPED.values())


def _in_group(group: str, path: str) -> bool:
    if group == "rest":
        return not re.search(REST, path)
    return re.search(GROUPED[group], path) is not None


def _operations(system: RunningSystem) -> list[tuple[str, str]]:
    doc = httpx.get(f"{system.url}/openapi.json", timeout=30).json()
    methods = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
    return [(m, p) for p, item in doc["paths"].items() for m in item if m in methods]


def test_the_groups_cover_every_operation_once(system: RunningSystem) -> None:
    for method, path in _operations(system):
        assert sum(_in_group(g, path) for g in GROUPS) == 1, (method, path)


@pytest.mark.parametrize("group", GROUPS)
def test_the_api_keeps_its_openapi_document(
    system: RunningSystem, user_token: str, tmp_path: Path, group: str
) -> None:
    """0 server errors, 0 responses off the schema, 0 undocumented status codes or content types: the CLI exits
    0 only if no check failed and no request errored."""
    selection = (
        ["--exclude-path-regex", REST] if group == "rest" else ["--include-path-regex", GROUPED[group]]
    )
    expected = sum(_in_group(group, path) for _, path in _operations(system))
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{system.url}/openapi.json",
        *selection,
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--header",
        f"Authorization: Bearer {user_token}",
        "--output-truncate",
        "false",
        "--report-dir",
        str(tmp_path),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=_env())
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    summary = "\n".join(output.splitlines()[-30:])
    print(summary)  # the figures, for `pytest -s` / -rA
    assert run.returncode == 0, output[-20_000:]
    tested = re.search(r"Tested: (\d+)", output)
    assert tested and int(tested.group(1)) == expected, summary  # every operation of the group, not a few


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env["NO_COLOR"] = "1"
    return env
