"""The web app's JavaScript checks as part of the suite: ESLint and the node unit tests of its pure modules
(gateway/web/test), run through npm as `npm run lint` and `npm test` in gateway/web."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "gateway" / "web"


def run_npm(script: str) -> subprocess.CompletedProcess[str]:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(
            "npm is not installed: the web app's lint and unit tests need Node 20+ (apt-get install npm)"
        )
    if not (WEB / "node_modules" / ".bin" / "eslint").exists():
        pytest.fail("the web app's dev dependencies are missing: run scripts/install --dev")
    env = {**os.environ, "npm_config_update_notifier": "false", "NO_COLOR": "1"}
    return subprocess.run(
        [npm, "run", "--silent", script], cwd=WEB, env=env, capture_output=True, text=True, timeout=180
    )


def test_web_js_is_lint_clean() -> None:
    out = run_npm("lint")
    assert out.returncode == 0, out.stdout + out.stderr


def test_web_js_unit_tests_pass() -> None:
    out = run_npm("test")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "# fail 0" in out.stdout and "# pass 0" not in out.stdout, out.stdout
