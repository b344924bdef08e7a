"""Many writers at once through one mount: every byte must read back."""

from __future__ import annotations

import os
import pathlib
import random
from concurrent.futures import ThreadPoolExecutor

from mount_support import mnt, store  # noqa: F401 - fixtures

THREADS = 4
FILES_PER_THREAD = 500


def _payload(seed: int) -> bytes:
    rng = random.Random(seed)
    size = rng.choice([0, 1, rng.randrange(4096), rng.randrange(70_000), rng.randrange(1_500_000)]) if seed % 50 == 0 else rng.randrange(20_000)
    return rng.randbytes(size)


def test_threads_write_many_files(mnt: pathlib.Path, store) -> None:
    # 500 files per thread on DictStore and FilesystemStore. SQLite lets one writer in at
    # a time and each put is its own committed (fsynced) transaction, so the four threads
    # queue on its lock: 125 files each still interleave the writers (about 2 s), 500
    # would take four times as long without testing anything more.
    count = FILES_PER_THREAD // 4 if type(store).__name__ == "SQLAlchemyStore" else FILES_PER_THREAD

    def writer(thread: int) -> None:
        directory = mnt / f"t{thread}"
        directory.mkdir()
        for index in range(count):
            (directory / f"f{index}").write_bytes(_payload(thread * 100_000 + index))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(writer, range(THREADS)))

    def check(thread: int) -> None:
        for index in range(count):
            expected = _payload(thread * 100_000 + index)
            assert (mnt / f"t{thread}" / f"f{index}").read_bytes() == expected
            assert store.get(f"t{thread}/f{index}") == expected

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(check, range(THREADS)))
    assert len(store.keys()) == THREADS * count
    assert sorted(os.listdir(mnt)) == [f"t{thread}" for thread in range(THREADS)]


def test_threads_share_one_file(mnt: pathlib.Path, store) -> None:
    block = 64 * 1024
    fd = os.open(mnt / "shared", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        def fill(part: int) -> None:
            for index in range(part, 64, THREADS):
                os.pwrite(fd, bytes([index]) * block, index * block)

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(fill, range(THREADS)))
    finally:
        os.close(fd)
    data = store.get("shared")
    assert data == b"".join(bytes([index]) * block for index in range(64))
