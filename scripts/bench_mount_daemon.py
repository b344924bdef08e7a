#!/usr/bin/env python3
"""The FUSE side of ``scripts/bench-mount --store URL``: mount a store and count its requests.

Run by ``bench-mount`` as a child process (so the workload and the FUSE daemon do not
share a GIL)::

    bench_mount_daemon.py URL MOUNTPOINT [NAME=VALUE ...]

opens the store at *URL* with :func:`kvfs.open_store`, wraps it in
:class:`CountingStore`, and mounts it at *MOUNTPOINT* with :func:`kvfs.mount.mounted`;
``NAME=VALUE`` arguments are :class:`~kvfs.mount.MountOptions` fields
(``attr_timeout=5``). Where a boto3 client sits under the store, every HTTP request it
sends is counted by S3 operation name as well (a botocore ``before-send`` hook, so
retries and multipart parts count as the requests they are).

It talks to its parent over stdin/stdout, one line each way:

* it writes ``ready PID`` once the mount is usable (or ``error MESSAGE`` and exits 1);
* ``counts`` makes it write one JSON line ``{"calls": {...}, "s3": {...}}`` with the
  counts since the previous ``counts`` and reset them;
* ``quit`` or end of input unmounts and exits.

SIGINT is ignored: the parent decides when to unmount.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import os
import pathlib
import signal
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from kvfs import open_store  # noqa: E402
from kvfs.decorator import StoreDecorator  # noqa: E402
from kvfs.mount import MountOptions, mounted  # noqa: E402
from kvfs.store import KeyValueStore  # noqa: E402

#: The public store methods whose calls are counted.
COUNTED_METHODS = (
    "put", "put_file", "get", "get_file", "open", "get_range", "stat", "__contains__",
    "iter_level", "iter_keys", "keys", "iter_prefixes", "copy", "move", "delete",
    "put_directory", "delete_directory", "has_directory", "new_staging_file",
    "commit_staging_file", "delete_many", "move_directory", "open_writer",
)  # fmt: skip


class Counts:
    """Thread-safe counters, read and reset together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def take(self) -> dict[str, int]:
        """The counts since the last call, which are reset."""
        with self._lock:
            counts, self._counts = dict(self._counts), collections.Counter()
        return counts


class CountingStore(StoreDecorator):
    """Passes every call through and counts the calls to each public method in *counts*.

    Only the outermost call on a thread is counted, so a method the core builds on
    another (``keys`` on ``iter_keys``) counts once.

    Unlike :class:`~kvfs.decorator.StoreDecorator`, it forwards ``supports_staging``,
    the staging methods, ``streams_writes`` with ``open_writer`` and the bulk operations
    too: it changes no value, so the mount may write into the wrapped store's staging
    files and writers, as it would without the counting.
    """

    def __init__(self, store: KeyValueStore, counts: Counts) -> None:
        super().__init__(store)
        self._counts = counts
        self._depth = threading.local()

    @property
    def supports_staging(self) -> bool:  # type: ignore[override]
        """The wrapped store's ``supports_staging``."""
        return self._dstore.supports_staging

    @property
    def streams_writes(self) -> bool:  # type: ignore[override]
        """The wrapped store's ``streams_writes``."""
        return self._dstore.streams_writes

    def _open_writer(self, key: str, metadata: Any = None) -> Any:
        return self._dstore.open_writer(key, metadata=metadata)

    def _new_staging_file(self, key: str) -> IO[bytes]:
        return self._dstore.new_staging_file(key)

    def _commit_staging_file(self, key: str, file: IO[bytes], metadata: Any = None) -> str:
        return self._dstore.commit_staging_file(key, file, metadata=metadata)

    # Bulk operations go to the wrapped store whole (one rename, batched deletes), as
    # they would without the counting.
    def _move_directory(self, source: str, dest: str) -> str:
        return self._dstore.move_directory(source, dest)

    def _delete_many(self, keys: list[str]) -> None:
        self._dstore.delete_many(keys)


def _counted(name: str) -> Callable[..., Any]:
    inner = getattr(StoreDecorator, name)

    @functools.wraps(inner)
    def method(self: CountingStore, *args: Any, **kwargs: Any) -> Any:
        depth = getattr(self._depth, "value", 0)
        if depth == 0:
            self._counts.add(name)
        self._depth.value = depth + 1
        try:
            return inner(self, *args, **kwargs)
        finally:
            self._depth.value = depth

    return method


for _name in COUNTED_METHODS:
    setattr(CountingStore, _name, _counted(_name))


def find_boto3_client(store: object) -> Any:
    """The botocore client under *store* (through decorators), or None."""
    seen = 0
    while store is not None and seen < 20:
        client = getattr(store, "__dict__", {}).get("client")
        if client is not None and hasattr(getattr(client, "meta", None), "events"):
            return client
        store = getattr(store, "__dict__", {}).get("_dstore")
        seen += 1
    return None


def count_s3_requests(client: Any, counts: Counts) -> None:
    """Count every HTTP request *client* sends, by operation name (``before-send.s3.PutObject``)."""

    def before_send(event_name: str, **_: Any) -> None:
        counts.add(event_name.rsplit(".", 1)[-1])

    client.meta.events.register("before-send.s3", before_send)


def mount_options(arguments: list[str]) -> MountOptions:
    """MountOptions from ``NAME=VALUE`` strings, each value converted to the field's type."""
    defaults = MountOptions()
    values: dict[str, Any] = {}
    for argument in arguments:
        name, _, text = argument.partition("=")
        if name not in {field.name for field in dataclasses.fields(MountOptions)}:
            raise ValueError(f"unknown mount option {name!r}")
        default = getattr(defaults, name)
        if isinstance(default, bool):
            values[name] = text.lower() in {"1", "true", "yes", "on"}
        elif isinstance(default, (int, float)):
            values[name] = type(default)(text)
        else:
            values[name] = text or None
    return MountOptions(**values)


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    url, mountpoint, *settings = sys.argv[1:]
    calls, requests = Counts(), Counts()
    try:
        options = mount_options(settings)
        store = open_store(url)
        client = find_boto3_client(store)
        if client is not None:
            count_s3_requests(client, requests)
        counting = CountingStore(store, calls)
        context = mounted(counting, mountpoint, **dataclasses.asdict(options))
        context.__enter__()
    except Exception as error:  # reported to the parent as one line
        print(f"error {type(error).__name__}: {error}", flush=True)
        return 1
    try:
        print(f"ready {os.getpid()}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "counts":
                print(json.dumps({"calls": calls.take(), "s3": requests.take()}), flush=True)
            elif command == "quit":
                break
    finally:
        context.__exit__(None, None, None)
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
