"""The store contract (:class:`kvfs.testing.StoreContract`) against memcached, minus listing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("pymemcache")

from servers import memcached_url, require_server  # noqa: E402

from kvfs.memory.memcachestore import MemcacheStore  # noqa: E402
from kvfs.testing import StoreContract  # noqa: E402


class TestMemcacheStore(StoreContract):
    streams_large_values = False  # an item is sent whole

    @pytest.fixture
    def store(self) -> Iterator[MemcacheStore]:
        require_server("memcached")
        with MemcacheStore.from_url(memcached_url()) as store:
            # memcached cannot list, so a fresh store is an emptied server (this run's own).
            store.mc.flush_all(noreply=False)
            yield store
