from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.migrate import upgrade


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[str]:
    """A migrated database of the test's own: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"
        await upgrade(url)
        yield url
    else:
        yield pg_url
