"""Real PostgreSQL and Redis for tests, each test isolated (own database, own key prefix).

With CI=true a missing service fails the test; locally it skips with the reason.
"""

from __future__ import annotations

import os
import uuid

import pytest

PG_ADMIN_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def service_missing(what: str, exc: BaseException) -> None:
    msg = f"{what} is not reachable ({exc!r}); start it as the README says"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def unique_name(prefix: str) -> str:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw")
    return f"{prefix}_{worker}_{uuid.uuid4().hex[:10]}"
