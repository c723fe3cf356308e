from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.index import LoopbackIndex


@pytest.fixture
def poetry_cache(tmp_path: Path) -> Path:
    """A per-test POETRY_CACHE_DIR (Poetry's config dir and virtualenvs also live under it)."""
    path = tmp_path / "poetry-cache"
    path.mkdir()
    return path


@pytest.fixture
def loopback_index(tmp_path: Path) -> Iterator[LoopbackIndex]:
    """A running PEP 503 index on 127.0.0.1 over tmp_path/index (empty; use .add)."""
    with LoopbackIndex(tmp_path / "index") as index:
        yield index
