"""Any fsspec filesystem as a store: :class:`FsspecStore` (URL ``fsspec+PROTOCOL://path``)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any, ClassVar

from .._extras import require
from ..errors import BackendError, KeyNotFoundError
from ..keys import SEPARATOR
from ..store import KeyInfo, KeyValueStore, _write_file_atomically

fsspec = require("fsspec", "fsspec")
from fsspec.core import url_to_fs  # noqa: E402
from fsspec.implementations.local import LocalFileSystem  # noqa: E402
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402
from fsspec.spec import AbstractFileSystem  # noqa: E402

#: Protocols of object stores, where a name ``a`` and names below ``a/`` can coexist
#: and nothing but a name exists (no empty directories).
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})

_CHUNK_SIZE = 1024 * 1024


@contextmanager
def _missing(key: str) -> Iterator[None]:
    """A path that is not there (or is a directory) is a missing key."""
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as error:
        raise KeyNotFoundError(key) from error


def _protocols(fs: AbstractFileSystem) -> set[str]:
    protocol = fs.protocol
    return {protocol} if isinstance(protocol, str) else set(protocol)


def _mtime(info: dict[str, Any]) -> float | None:
    """The modification time of an fsspec ``info`` entry; each filesystem names it its way."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "modified", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, (int, float)):
            return float(value)
        timestamp = getattr(value, "timestamp", None)  # a datetime
        if callable(timestamp):
            return float(timestamp())
        if isinstance(value, str):
            try:
                from datetime import datetime

                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


def _option_value(text: Any) -> Any:
    """A URL query value as a storage option: ``true``/``false``/numbers/JSON, else the text."""
    if not isinstance(text, str):
        return text
    lowered = text.strip().lower()
    if lowered in ("true", "false", "null"):
        return json.loads(lowered)
    try:
        return json.loads(text)
    except ValueError:
        return text


class FsspecStore(KeyValueStore):
    """Keeps each value in a file of an fsspec filesystem *fs*, below the directory *root*.

    *fs* is an fsspec filesystem (or a protocol name, opened with *storage_options*);
    *root* a path of it (``""``: its root). Key ``a/b`` is the file ``root/a/b``.

    Ranged reads are ``cat_file`` with a range, ``stat`` is ``info``, one-level listings
    are ``ls`` (with sizes), copies are ``cp_file`` (server-side on object stores). On a
    local filesystem a value is written to a temporary file and renamed into place; on
    object stores (fsspec's buffered files) it is stored whole when the file is closed,
    and a failed write is discarded; on the in-memory filesystem it is stored at once.
    Empty directories are kept on local and in-memory filesystems; object stores (s3,
    gs, az, ...) allow a key and keys below it at once.

    A missing file is :class:`~kvfs.errors.KeyNotFoundError`; the filesystem's other
    errors pass through (fsspec raises ``OSError`` subclasses for most of them).
    """

    fast_stat = True
    fast_ranges = True
    fast_level_listing = True
    listing_has_sizes = True
    # Set per filesystem in __init__ (class defaults: a remote object store).
    is_remote: ClassVar[bool] = True
    supports_directories: ClassVar[bool] = False
    allows_key_and_prefix: ClassVar[bool] = True
    supports_server_copy: ClassVar[bool] = True

    def __init__(self, fs: AbstractFileSystem | str, root: str = "", **storage_options: Any) -> None:
        if isinstance(fs, str):
            fs = fsspec.filesystem(fs, **storage_options)
        elif storage_options:
            raise TypeError("storage_options are for a protocol name, not a filesystem object")
        if not isinstance(fs, AbstractFileSystem):
            raise TypeError(f"fs must be an fsspec filesystem or a protocol, not {type(fs).__name__}")
        # Kept as given, so the store can be rebuilt elsewhere (fsspec filesystems pickle).
        self.fs = fs
        self.root = root
        self.storage_options = storage_options
        # Where key "x" lives, as the filesystem spells paths: the prefix of every key.
        self._prefix = fs._strip_protocol(self._join(fs._strip_protocol(root), "x"))[:-1]
        self._local = isinstance(fs, LocalFileSystem)
        memory = isinstance(fs, MemoryFileSystem)
        object_store = bool(_protocols(fs) & OBJECT_STORE_PROTOCOLS)
        self.is_remote = not (self._local or memory)  # type: ignore[misc]
        self.supports_directories = self._local or memory  # type: ignore[misc]
        self.allows_key_and_prefix = object_store  # type: ignore[misc]
        self.supports_server_copy = self.is_remote and (  # type: ignore[misc]
            type(fs).cp_file is not AbstractFileSystem.cp_file
        )
        if self._local:
            self.max_component_length = 255  # NAME_MAX of Linux filesystems

    @classmethod
    def from_url(cls, url: str, **storage_options: Any) -> FsspecStore:
        """Open fsspec's URL *url* (``memory://``, ``s3://bucket/prefix``, ...) as a store.

        String *storage_options* (from a URL's query) that read as JSON (``true``,
        ``10``) are passed as such values. Raises what fsspec raises for an unknown
        protocol (``ValueError``) or a missing implementation (``ImportError``).
        """
        options = {name: _option_value(value) for name, value in storage_options.items()}
        fs, root = url_to_fs(url, **options)
        store = cls(fs, root)
        store.url = url  # type: ignore[attr-defined]
        return store

    @staticmethod
    def _join(root: str, key: str) -> str:
        return f"{root.rstrip(SEPARATOR)}{SEPARATOR}{key}" if root.rstrip(SEPARATOR) else key

    def __repr__(self) -> str:
        protocol = sorted(_protocols(self.fs))[0]
        return f"{type(self).__name__}({protocol}://{self._prefix})"

    def _path(self, key: str) -> str:
        return self._prefix + key

    def _directory(self, key_prefix: str) -> str:
        """The path of the directory *key_prefix* (``""`` or ending in ``/``)."""
        return (self._prefix + key_prefix).rstrip(SEPARATOR) or self._prefix

    def _key(self, name: str) -> str | None:
        name = self.fs._strip_protocol(name)
        return name[len(self._prefix):] if name.startswith(self._prefix) else None

    # ------------------------------------------------------------------ reading

    def _info(self, key: str) -> dict[str, Any] | None:
        try:
            return self.fs.info(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _stat(self, key: str) -> KeyInfo:
        info = self._info(key)
        if info is None or info.get("type") == "directory":
            raise KeyNotFoundError(key)
        return KeyInfo(key, info.get("size"), _mtime(info))

    def _has_key(self, key: str) -> bool:
        info = self._info(key)
        return info is not None and info.get("type") != "directory"

    def _has_directory(self, key: str) -> bool:
        return bool(self.fs.isdir(self._path(key)))

    def _describe(self, key: str) -> KeyInfo | None:
        info = self._info(key)
        if info is None:
            return None
        if info.get("type") == "directory":
            return KeyInfo(key + SEPARATOR, is_prefix=True)
        if self.allows_key_and_prefix and self._has_directory(key):
            return KeyInfo(key + SEPARATOR, is_prefix=True)  # a directory wins over a value
        return KeyInfo(key, info.get("size"), _mtime(info))

    def _get(self, key: str) -> bytes:
        with _missing(key):
            return bytes(self.fs.cat_file(self._path(key)))

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        with _missing(key):
            return bytes(self.fs.cat_file(self._path(key), start=start, end=start + length))

    def _open(self, key: str) -> IO[bytes]:
        if not self._has_key(key):  # a directory opens on some filesystems
            raise KeyNotFoundError(key)
        with _missing(key):
            return self.fs.open(self._path(key), "rb")

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        directory = prefix[: prefix.rfind(SEPARATOR) + 1]
        try:
            names = self.fs.find(self._directory(directory), withdirs=False)
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            key = self._key(name)
            if key and key.startswith(prefix):
                yield key

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        if delimiter != SEPARATOR:
            yield from super()._iter_level(prefix, delimiter)
            return
        directory = prefix[: prefix.rfind(SEPARATOR) + 1]
        try:
            entries = self.fs.ls(self._directory(directory), detail=True)
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = self._key(entry["name"])
            if not key or not key.startswith(prefix) or key.rstrip(SEPARATOR) + SEPARATOR == prefix:
                continue  # outside, or the listed directory itself
            if entry.get("type") == "directory":
                yield KeyInfo(key.rstrip(SEPARATOR) + SEPARATOR, is_prefix=True)
            elif not key.endswith(SEPARATOR):  # an object store's directory marker
                yield KeyInfo(key, entry.get("size"), _mtime(entry))

    # ------------------------------------------------------------------ writing

    def _make_parent(self, path: str) -> None:
        parent = self.fs._parent(path)
        if parent and self._local:
            self.fs.makedirs(parent, exist_ok=True)

    def _refuse_directory(self, key: str, path: str) -> None:
        if not self.allows_key_and_prefix and self.fs.isdir(path):
            raise BackendError(f"{key!r} is a directory of {self!r}, it cannot also be a value")

    def _put(self, key: str, data: bytes) -> str:
        if self._local:
            return self._put_file(key, _BytesReader(data))
        path = self._path(key)
        self._refuse_directory(key, path)
        self.fs.pipe_file(path, data)
        return key

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        path = self._path(key)
        if self._local:
            self._make_parent(path)
            _write_locally(path, file)
            return key
        self._refuse_directory(key, path)
        if isinstance(self.fs, MemoryFileSystem):
            self.fs.pipe_file(path, file.read())  # the value lives in memory anyway
            return key
        target = self.fs.open(path, "wb")
        try:
            while chunk := file.read(_CHUNK_SIZE):
                target.write(chunk)
        except BaseException:
            _abandon(target)
            raise
        target.close()  # where the value is stored: object stores store it whole now
        return key

    def _delete(self, key: str) -> None:
        try:
            self.fs.rm_file(self._path(key))
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            pass

    def _copy(self, source: str, dest: str) -> str:
        self._stat(source)  # a file, not a directory (which some filesystems copy too)
        if self._local or not self.supports_server_copy:
            return super()._copy(source, dest)  # through _put_file: atomic
        path = self._path(dest)
        self._refuse_directory(dest, path)
        with _missing(source):
            self.fs.cp_file(self._path(source), path)
        return dest

    def _move(self, source: str, dest: str) -> str:
        if not self._local:
            return super()._move(source, dest)
        self._stat(source)
        path = self._path(dest)
        self._make_parent(path)
        with _missing(source):
            os.replace(self._path(source), path)  # a rename: atomic
        return dest

    # ------------------------------------------------------------------ directories

    def _put_directory(self, key: str) -> None:
        self.fs.makedirs(self._path(key), exist_ok=True)

    def _delete_directory(self, key: str) -> None:
        try:
            self.fs.rmdir(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            pass
        except OSError as error:
            if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise  # a directory that still holds something is left alone


def _abandon(file: Any) -> None:
    """Drop a file being written without storing it, where the filesystem can.

    fsspec's buffered files (object stores) store a value when closed; with
    ``autocommit`` off and ``discard()`` the parts sent so far are dropped instead.
    """
    if hasattr(file, "autocommit"):
        file.autocommit = False
    try:
        discard = getattr(file, "discard", None)
        if callable(discard):
            discard()
    finally:
        try:
            file.closed = True  # so that garbage collection does not close (and store) it
        except AttributeError:
            pass


def _write_locally(path: str, file: IO[bytes]) -> None:
    """Write *file* to the local *path* through a temporary file renamed into place."""
    _write_file_atomically(path, file)


class _BytesReader:
    """A value in memory read as a file (without BytesIO's copy of it)."""

    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        chunk = self._view[self._position:end]
        self._position += len(chunk)
        return bytes(chunk)


__all__ = ["FsspecStore", "OBJECT_STORE_PROTOCOLS"]
