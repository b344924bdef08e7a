"""The mount's read cache on its own: validity by size and time, limits, ownership of files."""

from __future__ import annotations

import os
import tempfile

from kvfs.mount.readcache import MEMORY_VALUE_LIMIT, ReadCache


def temporary_file(data: bytes) -> int:
    fd, path = tempfile.mkstemp()
    os.unlink(path)
    os.write(fd, data)
    return fd


def test_a_copy_is_served_only_for_the_same_size_and_time() -> None:
    cache = ReadCache(10_000)
    cache.keep_bytes("a", b"value", 100.5)
    assert cache.get("a", 5, 100.5).data == b"value"
    assert cache.get("a", 5, None) is None
    assert cache.get("a", 5, 101.5) is None  # changed since: dropped
    assert cache.get("a", 5, 100.5) is None
    cache.keep_bytes("b", b"value", 100.5)
    assert cache.get("b", 6, 100.5) is None


def test_file_copies_are_served_with_a_descriptor_of_their_own() -> None:
    cache = ReadCache(10_000)
    fd = temporary_file(b"0123456789")
    cache.keep_file("big", fd, 10, 7.25)
    copy = cache.get("big", 10, 7.25)
    assert copy is not None and copy.fd not in (-1, fd)
    assert os.pread(copy.fd, 4, 3) == b"3456"
    os.close(copy.fd)
    cache.drop("big")
    try:
        os.fstat(fd)
    except OSError:
        pass
    else:
        raise AssertionError("the cache did not close the descriptor it owned")


def test_the_least_recently_used_copies_go_first() -> None:
    cache = ReadCache(25)
    for key in "abc":
        cache.keep_file(key, temporary_file(b"x" * 10), 10, 1.5)
    # a went to make room for c; reading b makes a later newcomer evict c.
    assert cache.get("a", 10, 1.5) is None
    os.close(cache.get("b", 10, 1.5).fd)
    cache.keep_file("d", temporary_file(b"x" * 10), 10, 1.5)
    assert cache.get("c", 10, 1.5) is None
    os.close(cache.get("b", 10, 1.5).fd)
    os.close(cache.get("d", 10, 1.5).fd)


def test_too_big_values_and_a_zero_limit_keep_nothing() -> None:
    cache = ReadCache(0)
    assert not cache.enabled
    cache.keep_bytes("a", b"x", 1.5)
    assert cache.get("a", 1, 1.5) is None
    cache = ReadCache(10 * MEMORY_VALUE_LIMIT)
    cache.keep_bytes("big", bytes(11 * MEMORY_VALUE_LIMIT), 1.5)
    assert cache.get("big", 11 * MEMORY_VALUE_LIMIT, 1.5) is None
    cache.keep_file("huge", temporary_file(b"x"), 11 * MEMORY_VALUE_LIMIT, 1.5)
    assert cache.get("huge", 11 * MEMORY_VALUE_LIMIT, 1.5) is None


def test_moves_carry_the_copy_and_drops_forget_it() -> None:
    cache = ReadCache(10_000)
    cache.keep_bytes("d/a", b"a", 1.5)
    cache.keep_bytes("d/b", b"b", 1.5)
    cache.keep_bytes("e", b"e", 1.5)
    cache.move("d/a", "f", 9.5)
    assert cache.get("d/a", 1, 1.5) is None
    assert cache.get("f", 1, 9.5).data == b"a"
    cache.drop_tree("d")
    assert cache.get("d/b", 1, 1.5) is None
    assert cache.get("e", 1, 1.5).data == b"e"
    cache.clear()
    assert cache.get("e", 1, 1.5) is None


def test_values_beyond_the_memory_part_go_to_temporary_files(tmp_path) -> None:
    cache = ReadCache(100 * MEMORY_VALUE_LIMIT, str(tmp_path))
    big = os.urandom(MEMORY_VALUE_LIMIT + 1)
    cache.keep_bytes("big", big, 1.5)
    copy = cache.get("big", len(big), 1.5)
    assert copy.data is None and os.pread(copy.fd, len(big) + 1, 0) == big
    os.close(copy.fd)
    assert os.listdir(tmp_path) == []  # unlinked at once
    for number in range(70):  # 70 MiB of small values: more than the memory part
        cache.keep_bytes(f"small{number}", bytes([number]) * MEMORY_VALUE_LIMIT, 1.5)
    first, last = cache.get("small0", MEMORY_VALUE_LIMIT, 1.5), cache.get("small69", MEMORY_VALUE_LIMIT, 1.5)
    assert first.data is not None and first.data[:1] == bytes([0])
    assert last.data is None and os.pread(last.fd, 1, 0) == bytes([69])
    os.close(last.fd)
    cache.clear()
