"""Fixtures shared by the whole test suite.

Keep this file small: fixtures used by one test module belong in that module. Server
helpers live in ``tests/servers.py``; the store contract in :mod:`kvfs.testing`.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator

import pytest

from kvfs.memory import DictStore


@pytest.fixture
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """An empty directory for a filesystem store's root, outside the test's ``tmp_path``.

    Kept apart so that tests which check ``tmp_path`` stays empty are not fooled by it.
    """
    return tmp_path_factory.mktemp("store")


@pytest.fixture
def dict_store() -> Iterator[DictStore]:
    """A fresh, empty in-memory store."""
    with DictStore() as store:
        yield store
