"""Schemathesis against the embedded default: every check, every phase, a fixed seed and a bounded number of
examples per operation. Run it alone with `pytest -m contract`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.server import RunningSystem

pytestmark = pytest.mark.contract

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20260
MAX_EXAMPLES = 10


def test_the_api_keeps_its_openapi_document(system: RunningSystem, user_token: str, tmp_path: Path) -> None:
    """0 server errors, 0 responses off the schema, 0 undocumented status codes or content types: the CLI exits
    0 only if no check failed and no request errored."""
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{system.url}/openapi.json",
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
    assert tested and int(tested.group(1)) >= 25, summary  # every operation of the API, not a few


def _env() -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEMATHESIS_")}
    env["NO_COLOR"] = "1"
    return env
