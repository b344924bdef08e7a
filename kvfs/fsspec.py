"""Any kvfs store as an fsspec filesystem: :class:`KvfsFileSystem`, protocol ``kvfs``.

Installed with the ``fsspec`` extra, the protocol is registered through fsspec's entry
point, so every library that reads through fsspec (pandas, Dask, xarray, PyArrow) reads
and writes a kvfs store by URL; the store is named in the storage options::

    pandas.read_parquet("kvfs://data/x.parquet", storage_options={"store": "sqlite:///blobs.db"})

A path is a key (``data/x.parquet``); directories are the key prefixes ending in ``/``
(and, where the store keeps them, empty directories). Reads are ranged
(:meth:`~kvfs.store.KeyValueStore.get_range`), listings are one level each
(:meth:`~kvfs.store.KeyValueStore.iter_level`), ``info`` is one
:meth:`~kvfs.store.KeyValueStore.describe`, and a file opened for writing is stored
with one atomic put when it is closed: it appears whole or not at all.
"""

# The module shares its name with the fsspec package: every import here is absolute.
from __future__ import annotations

import datetime
import errno
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from kvfs._extras import require
from kvfs.errors import InvalidKeyError, ReadOnlyError
from kvfs.keys import SEPARATOR, check_key
from kvfs.mixins import UrlMixin
from kvfs.store import KeyInfo, KeyValueStore

fsspec = require("fsspec", "fsspec")
from fsspec.core import has_magic  # noqa: E402
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem  # noqa: E402
from fsspec.utils import stringify_path  # noqa: E402

_Method = TypeVar("_Method", bound=Callable[..., Any])


def _read_only_refused(method: _Method) -> _Method:
    """A write to a read-only store is a ``PermissionError`` (``EROFS``) to fsspec's callers."""

    @functools.wraps(method)
    def refusing(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ReadOnlyError as error:
            raise PermissionError(errno.EROFS, str(error)) from error

    return refusing  # type: ignore[return-value]

#: Bytes a file opened for reading asks the store for at once (fsspec's read-ahead block);
#: a larger read goes to the store as one range.
DEFAULT_BLOCK_SIZE = 5 * 1024 * 1024
#: A file being written stays in memory up to this size, then in a temporary file
#: (where the store cannot stage values in local files itself).
SPOOL_SIZE = 16 * 1024 * 1024

#: Storage options that configure fsspec's side of the filesystem, not the store.
_FSSPEC_OPTIONS = ("use_listings_cache", "listings_expiry_time", "max_paths", "asynchronous", "loop")


class _CacheByStoreURL(type(AbstractFileSystem)):  # type: ignore[misc]
    """fsspec reuses a filesystem made with the same arguments; that is only safe for a URL.

    Two store objects can print alike (two ``DictStore()``) yet hold different values,
    so a filesystem over a store object is never taken from, or put into, the cache.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        store = args[0] if args else kwargs.get("store")
        if store is not None and not isinstance(store, str):
            kwargs.setdefault("skip_instance_cache", True)
        return super().__call__(*args, **kwargs)


class KvfsFileSystem(AbstractFileSystem, metaclass=_CacheByStoreURL):
    """An fsspec filesystem over a kvfs store.

    *store* is a store URL (opened with :func:`kvfs.open_store`, *options* passed on as
    its keyword options) or a :class:`~kvfs.store.KeyValueStore` (then *options* must be
    empty). fsspec's own options (``use_listings_cache``, ...) are accepted and
    ignored: listings are never cached, since the store may change under them.

    Paths are keys, with or without ``kvfs://``; leading and trailing ``/`` are dropped.
    A missing key, or a path that cannot be a key (``a b``), raises
    ``FileNotFoundError`` on reading; writing an invalid key raises the store's
    ``ValueError``. A file opened with ``"wb"``, ``"xb"`` or ``"ab"`` is written into
    a local buffer (the store's staging file where it has them) and stored with one
    put when closed; leaving a ``with`` block with an exception, or losing the file
    unclosed, stores nothing. In an fsspec transaction files are stored at its end.
    ``mv`` and ``cp`` of one file use the store's move and copy (server-side where the
    store has that); ``mkdir`` keeps an empty directory where the store supports
    directories and is a no-op elsewhere, as on object stores.
    """

    protocol = "kvfs"
    root_marker = ""

    def __init__(self, store: str | KeyValueStore | None = None, **options: Any) -> None:
        fsspec_options = {name: options.pop(name) for name in _FSSPEC_OPTIONS if name in options}
        super().__init__(**fsspec_options)
        if store is None:
            raise TypeError(
                "KvfsFileSystem needs a store: a store URL or a KeyValueStore, for example "
                "storage_options={'store': 'sqlite:///blobs.db'}"
            )
        # Kept as given, so the filesystem can be rebuilt (fsspec pickles its arguments).
        self.store_url = store if isinstance(store, str) else None
        self.store_options = dict(options)
        if isinstance(store, str):
            from kvfs.url import open_store

            self.store: KeyValueStore = open_store(store, **options)
        elif isinstance(store, KeyValueStore):
            if options:
                raise TypeError(
                    "options are for a store URL; a store object is used as it is: "
                    + ", ".join(sorted(options))
                )
            self.store = store
        else:
            raise TypeError(
                f"store must be a store URL or a KeyValueStore, not {type(store).__name__}"
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(store={self.store!r})"

    # ------------------------------------------------------------------ paths

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        path = stringify_path(path)
        for marker in ("kvfs://", "kvfs::"):
            if path.startswith(marker):
                path = path[len(marker):]
                break
        return path.strip(SEPARATOR)

    def unstrip_protocol(self, name: str) -> str:
        return f"kvfs://{name}"

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        return {}

    # ------------------------------------------------------------------ metadata

    def _file_entry(self, entry: KeyInfo) -> dict[str, Any]:
        size = entry.size
        mtime = entry.last_modified
        if size is None:  # a listing without sizes: fsspec's users expect one
            with _missing_as_fnf(entry.key):
                found = self.store.stat(entry.key)
            size, mtime = found.size, found.last_modified if mtime is None else mtime
        info: dict[str, Any] = {"name": entry.key, "size": size, "type": "file"}
        if mtime is not None:
            info["mtime"] = mtime
        return info

    @staticmethod
    def _directory_entry(name: str) -> dict[str, Any]:
        return {"name": name.rstrip(SEPARATOR), "size": 0, "type": "directory"}

    def _describe(self, path: str) -> KeyInfo | None:
        key = self._strip_protocol(path)
        if not key:
            return KeyInfo("", is_prefix=True)
        try:
            return self.store.describe(key)
        except InvalidKeyError as error:
            # Not a key, so not a file: fsspec's callers test existence by info().
            raise FileNotFoundError(errno.ENOENT, f"no such key ({error})", path) from None

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """One :meth:`~kvfs.store.KeyValueStore.describe`; ``FileNotFoundError`` if nothing's there."""
        found = self._describe(path)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such key or directory", path)
        if found.is_prefix:
            return self._directory_entry(found.key)
        return self._file_entry(found)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """One level below *path* (one :meth:`~kvfs.store.KeyValueStore.iter_level`).

        A file lists as itself; ``FileNotFoundError`` if *path* is neither.
        """
        key = self._strip_protocol(path)
        entries = [
            self._directory_entry(entry.key) if entry.is_prefix else self._file_entry(entry)
            for entry in self.store.iter_level(key + SEPARATOR if key else "")
        ]
        if not entries and key:
            found = self._describe(key)
            if found is None:
                raise FileNotFoundError(errno.ENOENT, "no such key or directory", path)
            if not found.is_prefix:
                entries = [self._file_entry(found)]
        entries.sort(key=lambda entry: entry["name"])
        return entries if detail else [entry["name"] for entry in entries]

    def modified(self, path: str) -> datetime.datetime:
        info = self.info(path)
        if "mtime" not in info:
            raise NotImplementedError(f"{self.store!r} does not keep modification times")
        return datetime.datetime.fromtimestamp(info["mtime"], tz=datetime.timezone.utc)

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """The store's URL for *path* (:meth:`~kvfs.mixins.UrlMixin.url_for`), where it has them."""
        if not isinstance(self.store, UrlMixin):
            raise NotImplementedError(f"{self.store!r} does not make URLs")
        return self.store.url_for(self._strip_protocol(path))

    # ------------------------------------------------------------------ reading

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        key = self._strip_protocol(path)
        with _missing_as_fnf(path):
            if start is None and end is None:
                return self.store.get(key)
            start = start or 0
            if start < 0 or (end is not None and end < 0):  # fsspec: counted from the end
                size = self.store.stat(key).size or 0
                start = max(0, size + start) if start < 0 else start
                end = None if end is None else (max(0, size + end) if end < 0 else end)
            if end is None:
                end = self.store.stat(key).size or 0
            return self.store.get_range(key, start, max(0, end - start))

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | None = None,
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> KvfsFile:
        key = self._strip_protocol(path)
        if mode == "rb":
            info = self.info(path)
            if info["type"] == "directory":
                raise IsADirectoryError(errno.EISDIR, "a directory, not a file", path)
            kwargs.setdefault("size", info["size"])
        else:
            if mode not in ("wb", "xb", "ab"):
                raise ValueError(f"unsupported mode {mode!r}: use rb, wb, xb or ab")
            if not self.store.supports_writes:
                raise PermissionError(errno.EROFS, f"{self.store!r} is read-only", path)
            check_key(key)  # fail before the data is written, not at close
            if mode == "xb" and self.exists(path):
                raise FileExistsError(errno.EEXIST, "the key exists", path)
        return KvfsFile(
            self,
            key,
            mode,
            block_size=block_size or DEFAULT_BLOCK_SIZE,
            autocommit=autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    # ------------------------------------------------------------------ writing

    @_read_only_refused
    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        """Store *value* under *path* with one put; ``mode="create"`` refuses an existing key."""
        if mode == "create" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "the key exists", path)
        self.store.put(self._strip_protocol(path), bytes(value))

    @_read_only_refused
    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        key = self._strip_protocol(path)
        if not key:
            return
        found = self._describe(path)
        if found is not None and not found.is_prefix:
            raise FileExistsError(errno.EEXIST, "a file of that name exists", path)
        if self.store.supports_directories and found is None:
            self.store.put_directory(key)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        if not exist_ok and self._strip_protocol(path) and self.exists(path):
            raise FileExistsError(errno.EEXIST, "exists", path)
        self.mkdir(path)

    @_read_only_refused
    def rmdir(self, path: str) -> None:
        key = self._strip_protocol(path)
        if not key:
            return
        if any(True for _ in self.store.iter_level(key + SEPARATOR)):
            raise OSError(errno.ENOTEMPTY, "directory not empty", path)
        if self.store.supports_directories:
            self.store.delete_directory(key)

    @_read_only_refused
    def rm_file(self, path: str) -> None:
        found = self._describe(path)
        if found is None:
            # Gone already, as a directory made only of the keys a recursive rm removed
            # (rm itself raises FileNotFoundError for a path that matches nothing).
            return
        key = self._strip_protocol(path)
        if not key:
            return
        if found.is_prefix:
            # Called for each directory of a recursive rm, after what is in it.
            if self.store.supports_directories:
                self.store.delete_directory(key)
        else:
            self.store.delete(key)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Remove *path* (with *recursive*, and what is below it); ``FileNotFoundError`` if missing."""
        if isinstance(path, str) and not has_magic(path) and not self.exists(path):
            raise FileNotFoundError(errno.ENOENT, "no such key or directory", path)
        super().rm(path, recursive=recursive, maxdepth=maxdepth)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    @_read_only_refused
    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        found = self._describe(path1)
        if found is None:
            raise FileNotFoundError(errno.ENOENT, "no such key or directory", path1)
        if found.is_prefix:  # a recursive copy lists directories too
            self.makedirs(path2, exist_ok=True)
            return
        with _missing_as_fnf(path1):
            self.store.copy(found.key, self._strip_protocol(path2))

    @_read_only_refused
    def mv(
        self,
        path1: Any,
        path2: Any,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Move; one file onto a file name is the store's :meth:`~kvfs.store.KeyValueStore.move`."""
        if isinstance(path1, str) and isinstance(path2, str) and not path2.endswith(SEPARATOR):
            source = self._describe(path1)
            target = self._describe(path2)
            one_file = source is not None and not source.is_prefix
            if one_file and (target is None or not target.is_prefix):
                with _missing_as_fnf(path1):
                    self.store.move(source.key, self._strip_protocol(path2))
                return
        super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)


class KvfsFile(AbstractBufferedFile):
    """A file of a :class:`KvfsFileSystem`: ranged reads, or one put at close.

    Reading goes through fsspec's read-ahead cache in blocks of *block_size*; a read
    larger than that is one :meth:`~kvfs.store.KeyValueStore.get_range`. Writing
    collects the value locally and stores it when the file is committed (at close,
    unless in a transaction).
    """

    fs: KvfsFileSystem

    def __init__(self, fs: KvfsFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        kwargs.setdefault("cache_type", "readahead")
        super().__init__(fs, path, mode, **kwargs)
        self._sink: Any = None
        if mode != "rb":
            store = fs.store
            if store.supports_staging:
                self._sink = store.new_staging_file(path)  # committed without a copy
            else:
                self._sink = tempfile.SpooledTemporaryFile(max_size=SPOOL_SIZE)
            if mode == "ab":
                try:
                    with _missing_as_fnf(path):
                        store.get_file(path, self._sink)
                except FileNotFoundError:
                    pass
                self.loc = self._sink.tell()

    def _fetch_range(self, start: int, end: int) -> bytes:
        with _missing_as_fnf(self.path):
            return self.fs.store.get_range(self.path, start, max(0, end - start))

    def read(self, length: int = -1) -> bytes:
        """Read *length* bytes (all that is left for -1).

        A read of a block or more (PyArrow reads whole column chunks) is one ranged
        read of exactly that: through the read-ahead cache it would fetch a block more
        than asked and copy the result once again.
        """
        length = -1 if length is None else int(length)
        if self.mode == "rb" and not self.closed and (length < 0 or length >= self.blocksize):
            end = self.size if length < 0 else min(self.size, self.loc + length)
            if end - self.loc >= self.blocksize:
                data = self._fetch_range(self.loc, end)
                self.loc += len(data)
                return data
        return super().read(length)

    def _upload_chunk(self, final: bool = False) -> bool:
        self.buffer.seek(0)
        shutil.copyfileobj(self.buffer, self._sink)
        if final and self.autocommit:
            self.commit()
        return True

    @_read_only_refused
    def commit(self) -> None:
        """Store what was written: one atomic put (or staging commit) of the whole value."""
        sink, self._sink = self._sink, None
        if sink is None:
            return
        store = self.fs.store
        try:
            if store.supports_staging:
                store.commit_staging_file(self.path, sink)
            else:
                sink.seek(0)
                store.put_file(self.path, sink)
        finally:
            sink.close()

    def discard(self) -> None:
        """Drop what was written; nothing is stored."""
        sink, self._sink = self._sink, None
        if sink is not None:
            sink.close()

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is not None and self.writable():
            # An exception while writing: the value is incomplete, store nothing.
            self.discard()
            self.closed = True
            return
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_sink", None) is not None and not self.closed:
            self.discard()  # never store a file its writer did not close
            self.closed = True
        else:
            super().__del__()


@contextmanager
def _missing_as_fnf(path: str) -> Iterator[None]:
    """A missing key is a ``FileNotFoundError`` to fsspec's callers."""
    try:
        yield
    except KeyError as error:
        raise FileNotFoundError(errno.ENOENT, "no such key", path) from error


__all__ = ["DEFAULT_BLOCK_SIZE", "KvfsFile", "KvfsFileSystem"]
