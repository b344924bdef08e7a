"""The store core: :class:`KeyValueStore`, a template for every backend.

Public methods validate their arguments once and call an underscore hook. A backend
must provide :meth:`~KeyValueStore._delete`, :meth:`~KeyValueStore.iter_keys` (or
:meth:`~KeyValueStore._iter_keys`), :meth:`~KeyValueStore._open` and
:meth:`~KeyValueStore._put_file`; every other hook has a working, if slow, default
built on those four, and a backend overrides it for speed. What a backend does natively
is declared in capability flags (``fast_stat``, ``fast_ranges``, ...) rather than
discovered by probing.

Beyond simplekv's API the core offers what a filesystem view needs:

* :meth:`~KeyValueStore.stat`: size and last-modified time without reading the value;
* :meth:`~KeyValueStore.get_range`: a byte range without reading the whole value;
* :meth:`~KeyValueStore.iter_level` / :meth:`~KeyValueStore.iter_prefixes`: one level of a
  hierarchical listing, with sizes where the backend's listing has them;
* directory markers (:meth:`~KeyValueStore.put_directory`, ...), so an empty directory
  can exist in a store of keys;
* :meth:`~KeyValueStore.copy` / :meth:`~KeyValueStore.move`, server-side where possible;
* POSIX metadata (mode, owner, times) where the backend keeps it (``keeps_metadata``):
  in :class:`KeyInfo`, and changed with :meth:`~KeyValueStore.set_metadata`;
* :meth:`~KeyValueStore.check`: one cheap request that tells whether the store is there.
"""

from __future__ import annotations

import inspect
import io
import math
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, ClassVar, TypeVar, Union

from .errors import InvalidKeyError, InvalidLinkTargetError, InvalidValueError, KeyNotFoundError, ReadOnlyError
from .keys import _KNOWN_VALID, MAX_KEY_LENGTH, SHORT_KEY_LENGTH, SEPARATOR, check_key, check_prefix
from .writer import StagedValueWriter, ValueWriter

#: A file name or an open binary file, as ``get_file``/``put_file`` accept.
FileOrFilename = Union[str, "os.PathLike[str]", IO[bytes], BinaryIO]

_Item = TypeVar("_Item")
_Page = TypeVar("_Page")

#: Chunk size for streaming copies: large enough to amortise calls, small enough for memory.
CHUNK_SIZE = 1024 * 1024

#: What a directory marker is called inside stores that hold arbitrary names: the
#: directory's key followed by the separator (``a/b/``). Never a valid key, so it can
#: never collide with a value, and it is the convention S3 and GCS tools use.
DIRECTORY_MARKER_SUFFIX = SEPARATOR

#: The suffix of the key that holds a symbolic link's target (rclone's ``--links``
#: convention): the link ``a/b`` is the value ``a/b.rclonelink``.
LINK_SUFFIX = ".rclonelink"


@dataclass(frozen=True)
class KeyInfo:
    """What a store knows about a key (or, with ``is_prefix``, a directory) without reading it.

    ``size`` is in bytes; ``last_modified`` is a POSIX timestamp in seconds (the mtime).
    Either is ``None`` where the backend does not know it cheaply (a listing without
    sizes). For a prefix, ``key`` ends with the delimiter and ``size`` is ``None``.

    ``mode`` (the permission bits, ``0o7777`` at most, no file type), ``uid`` and ``gid``
    are filled only by stores that keep POSIX metadata (``keeps_metadata``), where it
    costs nothing extra; ``None`` means unknown.
    """

    key: str
    size: int | None = None
    last_modified: float | None = None
    is_prefix: bool = False
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def check_metadata(
    mode: object = None, uid: object = None, gid: object = None, mtime: object = None, atime: object = None
) -> None:
    """Raise ``ValueError`` unless each given field is in range (None: not given).

    *mode* is the permission bits (``0`` to ``0o7777``), *uid* and *gid* non-negative
    ints, *mtime* and *atime* finite numbers of seconds.
    """
    if mode is not None and (type(mode) is not int or not 0 <= mode <= 0o7777):
        raise ValueError(f"mode must be an int from 0 to 0o7777, not {mode!r}")
    for name, owner in (("uid", uid), ("gid", gid)):
        if owner is not None and (type(owner) is not int or owner < 0):
            raise ValueError(f"{name} must be a non-negative int, not {owner!r}")
    for name, when in (("mtime", mtime), ("atime", atime)):
        if when is not None and (type(when) not in (int, float) or not math.isfinite(when)):  # type: ignore[arg-type]
            raise ValueError(f"{name} must be a finite number of seconds, not {when!r}")


def _check_metadata_type(metadata: object) -> None:
    if not isinstance(metadata, Metadata):
        raise TypeError(f"metadata must be a kvfs.Metadata, not {type(metadata).__name__}")


@dataclass(frozen=True)
class Metadata:
    """POSIX metadata written together with a value (``put(..., metadata=Metadata(...))``).

    ``mode`` is the permission bits (``0o7777`` at most, no file type), ``uid`` and
    ``gid`` the owner, ``mtime`` a POSIX timestamp in seconds; None fields are not
    written (a store that carries metadata in its uploads then keeps none for them, as
    a new object has none). ``ValueError`` at construction for a value out of range.
    """

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    mtime: float | None = None

    def __post_init__(self) -> None:
        check_metadata(self.mode, self.uid, self.gid, self.mtime)

    def fields(self) -> dict[str, int | float]:
        """The given fields by name (``set_metadata`` arguments)."""
        values = {"mode": self.mode, "uid": self.uid, "gid": self.gid, "mtime": self.mtime}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Hook:
    """One hook of the core, as a decorator sees it (see :data:`HOOKS`).

    ``method`` is the public method that calls the hook: what a decorator calls on the
    store it wraps. ``arguments`` says what each positional argument is: ``"key"``,
    ``"prefix"`` (a listing prefix), ``"delimiter"``, or ``""`` for anything else
    (further arguments, such as ``ttl_secs``, are passed on as they are). ``result``
    says what the hook returns: ``"key"``, ``"keys"`` (an iterator of keys), ``"info"``
    (a :class:`KeyInfo`), ``"infos"`` (an iterator of them) or ``""`` (anything else).
    ``writes`` is True for hooks that change the store. ``forwarded`` is False for the
    bulk hooks a decorator builds from its own hooks (the core's default), so that what
    a decorator does per key (a cache dropping its copy) still happens.
    """

    method: str
    arguments: tuple[str, ...] = ("key",)
    result: str = ""
    writes: bool = False
    forwarded: bool = True


#: Every hook of the core, by name. Decorators derive their forwarding from this table
#: (:mod:`kvfs.decorator`): a hook added here is passed through by every decorator, its
#: keys mapped by key-transforming ones and refused by read-only ones when it writes.
#: Adding a hook to the core is one line here.
HOOKS: dict[str, Hook] = {
    "_delete": Hook("delete", writes=True),
    "_iter_keys": Hook("iter_keys", ("prefix",), "keys"),
    "_has_key": Hook("__contains__"),
    "_get": Hook("get"),
    "_open": Hook("open"),
    "_open_with_info": Hook("open_with_info", forwarded=False),
    "_get_file": Hook("get_file", ("key", "")),
    "_get_filename": Hook("get_file", ("key", "")),
    "_put": Hook("put", ("key", ""), "key", writes=True),
    "_put_file": Hook("put_file", ("key", ""), "key", writes=True),
    "_put_filename": Hook("put_file", ("key", ""), "key", writes=True),
    "_stat": Hook("stat", result="info"),
    "_get_range": Hook("get_range", ("key", "", "")),
    "_iter_level": Hook("iter_level", ("prefix", "delimiter"), "infos"),
    "_copy": Hook("copy", ("key", "key"), "key", writes=True),
    "_move": Hook("move", ("key", "key"), "key", writes=True),
    "_put_directory": Hook("put_directory", writes=True),
    "_delete_directory": Hook("delete_directory", writes=True),
    "_has_directory": Hook("has_directory"),
    "_describe": Hook("describe", result="info"),
    "_new_staging_file": Hook("new_staging_file"),
    "_commit_staging_file": Hook("commit_staging_file", ("key", ""), "key", writes=True),
    # Not forwarded: a decorator's writer is the core's, which stores through the
    # decorator's own put_file (a transformed value, a cache dropping its copy).
    "_open_writer": Hook("open_writer", writes=True, forwarded=False),
    "_sync": Hook("sync"),
    "_check": Hook("check", ()),
    "_set_metadata": Hook("set_metadata", writes=True),
    "_describe_root": Hook("describe_root", (), "info"),
    "_delete_many": Hook("delete_many", ("",), writes=True, forwarded=False),
    "_move_directory": Hook("move_directory", ("key", "key"), "key", writes=True, forwarded=False),
}

#: Every capability flag and key limit of the core (class attributes of
#: :class:`KeyValueStore`); decorators report the wrapped store's values.
CAPABILITY_FLAGS: tuple[str, ...] = (
    "supports_writes",
    "fast_stat",
    "fast_ranges",
    "fast_level_listing",
    "listing_has_sizes",
    "supports_server_copy",
    "supports_directories",
    "allows_key_and_prefix",
    "ttl_support",
    "supports_staging",
    "streams_writes",
    "is_remote",
    "keeps_metadata",
    "metadata_with_writes",
    "listing_has_metadata",
    "supports_listing",
    "parallel_requests",
    "max_key_length",
    "max_component_length",
)


class Rebuild:
    """Stands for an object that is made again, by ``factory(*args, **kwargs)``, when unpickled.

    A backend whose constructor took a client that cannot be pickled (a boto3 client,
    an SQLAlchemy engine) puts one of these in its place in
    :meth:`KeyValueStore._travelling_arguments`: the other process builds its own client
    from the same configuration.
    """

    def __init__(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self.factory = factory
        self.args = args
        self.kwargs = kwargs

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.factory, self.args, self.kwargs))

    def __repr__(self) -> str:
        return f"Rebuild({getattr(self.factory, '__qualname__', self.factory)!r})"


def _init_signature(cls: type) -> inspect.Signature:
    """The signature of *cls*'s ``__init__`` without ``self``."""
    signature = inspect.signature(cls.__init__)  # type: ignore[misc]
    return signature.replace(parameters=list(signature.parameters.values())[1:])


def _rebuild(factory: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Call *factory* in the process that unpickles (the other half of ``__reduce__``)."""
    return factory(*args, **kwargs)


def _short_keys_fit(key_limit: object, component_limit: object) -> bool:
    """Whether limits like these accept every key of up to SHORT_KEY_LENGTH bytes."""
    return (
        isinstance(key_limit, int)
        and key_limit >= SHORT_KEY_LENGTH
        and (component_limit is None or (isinstance(component_limit, int) and component_limit >= SHORT_KEY_LENGTH))
    )


def _is_bytes_like(data: object) -> bool:
    return isinstance(data, (bytes, bytearray, memoryview))


class KeyValueStore:
    """A store of binary values under string keys: simplekv's API plus filesystem needs.

    Every public method raises :class:`~kvfs.errors.InvalidKeyError` (a ``ValueError``)
    for an invalid key before touching the backend, :class:`~kvfs.errors.KeyNotFoundError`
    (a ``KeyError``) for a missing key where a value is needed, and
    :class:`~kvfs.errors.BackendError` (an ``OSError``) when the backend fails.

    Every store is safe to use from several threads at once, and pickles to an
    equivalent store (see :meth:`__reduce__`), so it can be sent to another process.
    """

    #: Longest key in bytes this store accepts.
    max_key_length: ClassVar[int] = MAX_KEY_LENGTH
    #: Longest key component in bytes, where the backend has such a limit (file names).
    max_component_length: ClassVar[int | None] = None

    # Capability flags: what this backend does natively. The slow defaults always work.
    #: The store accepts writes (False for read-only stores and decorators).
    supports_writes: ClassVar[bool] = True
    #: :meth:`stat` is answered without reading the value.
    fast_stat: ClassVar[bool] = False
    #: :meth:`get_range` transfers only the requested range.
    fast_ranges: ClassVar[bool] = False
    #: :meth:`iter_level` is one native listing call, not a scan of all keys below.
    fast_level_listing: ClassVar[bool] = False
    #: :meth:`iter_level` entries carry ``size`` (and ``last_modified`` where known).
    listing_has_sizes: ClassVar[bool] = False
    #: :meth:`copy` runs on the server, without moving the value through this process.
    supports_server_copy: ClassVar[bool] = False
    #: Empty directories can be kept (:meth:`put_directory`), and survive a reopen.
    supports_directories: ClassVar[bool] = False
    #: A key ``a`` and keys under ``a/`` may exist at the same time.
    allows_key_and_prefix: ClassVar[bool] = True
    #: ``put`` and ``put_file`` accept ``ttl_secs`` (see :class:`TimeToLiveMixin`).
    ttl_support: ClassVar[bool] = False
    #: A value can be written in place before it is stored: :meth:`new_staging_file`
    #: gives a new local file and :meth:`commit_staging_file` makes it a key's value
    #: atomically, without copying it (a rename where values are local files).
    supports_staging: ClassVar[bool] = False
    #: :meth:`open_writer` sends the value while it is written (S3: a multipart upload
    #: whose parts go in the background), holding a bounded amount in memory, rather
    #: than collecting it on local disk until the close.
    streams_writes: ClassVar[bool] = False
    #: Every call is a round trip to a server over the network (S3, GCS, Redis, a
    #: database server): worth saving even at the cost of a bigger answer.
    is_remote: ClassVar[bool] = False
    #: How many requests bulk operations (:meth:`delete_many`, :meth:`move_directory`)
    #: keep in flight at once on a remote store.
    parallel_requests: ClassVar[int] = 8
    #: POSIX metadata lasts: :meth:`set_metadata` keeps a mode, an owner and times for
    #: values and directories, and :meth:`stat`, :meth:`describe` and :meth:`iter_level`
    #: report the mode and owner in :class:`KeyInfo`.
    keeps_metadata: ClassVar[bool] = False
    #: With ``keeps_metadata``: the ``metadata`` given to :meth:`put`, :meth:`put_file` and
    #: :meth:`commit_staging_file` is written in the same request as the value (user
    #: metadata of an S3 or GCS object); the write hooks receive it as ``metadata=``.
    #: Without it, a store that keeps metadata writes the value, then ``_set_metadata``.
    metadata_with_writes: ClassVar[bool] = False
    #: With ``keeps_metadata``: :meth:`iter_level` and :meth:`describe` entries carry the
    #: mode, owner and mtime kept (on S3 only :meth:`stat`, a ``HEAD``, does).
    listing_has_metadata: ClassVar[bool] = False
    #: The store can list its keys (``keys``, ``iter_level``, ``has_directory``,
    #: ``describe``). Without it (memcached) those raise
    #: :class:`~kvfs.errors.ListingUnsupportedError` and the store cannot be mounted.
    supports_listing: ClassVar[bool] = True

    # ------------------------------------------------------------------ pickling

    def __new__(cls, *args: Any, **kwargs: Any) -> KeyValueStore:
        store = super().__new__(cls)
        # How the store was built, so that pickle can build it again in another process.
        object.__setattr__(store, "_construction", (args, kwargs))
        return store

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle the store as the recipe to build it again (``pickle.dumps(store)`` works).

        The recipe is, first found: what :meth:`_rebuilt_by` recorded (``from_url``
        constructors and :func:`kvfs.open_store` record themselves), else the class
        called with the arguments this store was constructed with, as
        :meth:`_travelling_arguments` adjusts them (clients replaced by
        :class:`Rebuild`), plus :meth:`_travelling_state`. Wrapped stores travel inside
        their decorators. Attributes changed after construction are not carried.
        Raises ``TypeError`` naming the reason when the store cannot travel.
        """
        recipe = self.__dict__.get("_recipe")
        if recipe is None:
            args, kwargs = self.__dict__.get("_construction", ((), {}))
            signature = _init_signature(type(self))
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError:  # an __init__ that is not the one the store was built with
                recipe = (type(self), args, kwargs)
            else:
                arguments = self._travelling_arguments(dict(bound.arguments))
                bound = inspect.BoundArguments(signature, arguments)  # type: ignore[arg-type]
                recipe = (type(self), bound.args, bound.kwargs)
        return (_rebuild, recipe, self._travelling_state())

    def _rebuilt_by(self, factory: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Record that ``factory(*args, **kwargs)`` builds this store again (for pickle).

        Alternative constructors such as ``from_url`` call it on the store they return.
        """
        object.__setattr__(self, "_recipe", (factory, args, kwargs))

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments (by parameter name) as they travel in a pickle.

        Backends override this to replace what cannot be pickled, a client object, by
        a :class:`Rebuild` of it, or to raise ``TypeError`` saying why the store cannot
        travel. The default passes them as they are.
        """
        return arguments

    def _travelling_state(self) -> dict[str, Any] | None:
        """Attributes to set on the rebuilt store (a ``DictStore``'s times); None: none."""
        return None

    # ------------------------------------------------------------------ validation

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        # Whether every remembered short key (kvfs.keys._KNOWN_VALID) is valid here too,
        # which lets the hot paths skip the full check for keys seen before. A store with
        # its own key check never takes the shortcut.
        cls._short_keys_valid = cls._check_valid_key is KeyValueStore._check_valid_key and _short_keys_fit(
            cls.max_key_length, cls.max_component_length
        )

    def __setattr__(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)
        if name in ("max_key_length", "max_component_length"):  # a limit set per store
            object.__setattr__(
                self,
                "_short_keys_valid",
                type(self)._check_valid_key is KeyValueStore._check_valid_key
                and _short_keys_fit(self.max_key_length, self.max_component_length),
            )

    _short_keys_valid: ClassVar[bool] = True

    def _check_valid_key(self, key: object) -> None:
        """Raise :class:`~kvfs.errors.InvalidKeyError` unless *key* is valid for this store."""
        if type(key) is str and key in _KNOWN_VALID and self._short_keys_valid:
            return
        check_key(key, self.max_key_length, self.max_component_length)

    @staticmethod
    def _check_valid_value(data: object) -> bytes:
        if type(data) is bytes:
            return data
        if _is_bytes_like(data):
            return bytes(data)  # type: ignore[arg-type]
        raise InvalidValueError(f"a value must be bytes, not {type(data).__name__}")

    # ------------------------------------------------------------------ simplekv API

    def __contains__(self, key: object) -> bool:
        """Return whether *key* exists. Raises ``ValueError`` for an invalid key."""
        self._check_valid_key(key)
        return self._has_key(key)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[str]:
        """Iterate over every key (in no particular order)."""
        return self.iter_keys()

    def delete(self, key: str) -> None:
        """Delete *key*. Deleting a missing key is not an error."""
        self._check_valid_key(key)
        self._delete(key)

    def get(self, key: str) -> bytes:
        """Return the value of *key* as bytes. ``KeyError`` if it does not exist."""
        # The key check is inlined on the two hottest methods (a method call costs as
        # much as a dictionary lookup); it is the same test as _check_valid_key's.
        if type(key) is not str or key not in _KNOWN_VALID or not self._short_keys_valid:
            self._check_valid_key(key)
        return self._get(key)

    def get_file(self, key: str, file: FileOrFilename) -> None:
        """Write the value of *key* to *file*, an open binary file or a file name.

        The value is streamed in chunks. When *file* is a name and *key* is missing,
        ``KeyError`` is raised and no file is created; the named file is written under a
        temporary name and renamed into place, so a reader never sees a partial file.
        """
        self._check_valid_key(key)
        if isinstance(file, (str, os.PathLike)):
            return self._get_filename(key, os.fspath(file))
        return self._get_file(key, file)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Iterate over the keys that start with *prefix* (in no particular order)."""
        check_prefix(prefix)
        for name in self._iter_keys(prefix):
            if not name.endswith(DIRECTORY_MARKER_SUFFIX):
                yield name

    def keys(self, prefix: str = "") -> list[str]:
        """Return a list of the keys that start with *prefix*."""
        return list(self.iter_keys(prefix))

    def open(self, key: str) -> IO[bytes]:
        """Open *key* for reading: a readable, seekable binary file object.

        ``KeyError`` is raised here, at open time, if *key* does not exist.
        """
        self._check_valid_key(key)
        return self._open(key)

    def open_with_info(self, key: str) -> tuple[IO[bytes], KeyInfo | None]:
        """:meth:`open` *key*, and what the request that opened it told of the value.

        The :class:`KeyInfo` (size, mtime, and the mode and owner where the store keeps
        them) comes at no extra request where the backend's answer carries it (S3's
        ``GET``); None elsewhere. Raises what :meth:`open` raises. Decorators give None
        (their values may differ from the wrapped store's).
        """
        self._check_valid_key(key)
        return self._open_with_info(key)

    def put(self, key: str, data: bytes, *, metadata: Metadata | None = None) -> str:
        """Store *data* (bytes) under *key* and return the key.

        A value that is not bytes raises :class:`~kvfs.errors.InvalidValueError`, which
        ``except IOError`` catches, as in simplekv. An empty value is a value.
        *metadata* (a :class:`Metadata`) is kept with the value where the store
        ``keeps_metadata`` (in the same request where ``metadata_with_writes``), and
        ignored elsewhere.
        """
        if type(key) is not str or key not in _KNOWN_VALID or not self._short_keys_valid:
            self._check_valid_key(key)
        if type(data) is not bytes:
            data = self._check_valid_value(data)
        if metadata is None:
            return self._put(key, data)
        return self._write_with_metadata(self._put, key, data, metadata)

    def put_file(self, key: str, file: FileOrFilename, *, metadata: Metadata | None = None) -> str:
        """Store the contents of *file* (an open binary file or a file name) under *key*.

        The file is read in chunks until its end, so pipes and sockets that return short
        reads are stored whole, and a large value never sits whole in memory (where the
        backend streams). Returns the key. *metadata* as for :meth:`put`.
        """
        self._check_valid_key(key)
        if isinstance(file, (str, os.PathLike)):
            if metadata is None:
                return self._put_filename(key, os.fspath(file))
            return self._write_with_metadata(self._put_filename, key, os.fspath(file), metadata)
        if metadata is None:
            return self._put_file(key, file)
        return self._write_with_metadata(self._put_file, key, file, metadata)

    def _write_with_metadata(self, hook: Callable[..., str], key: str, content: Any, metadata: Metadata) -> str:
        """Call the write *hook* for *key* so that *metadata* is kept with the value where it can be."""
        _check_metadata_type(metadata)
        if not self.keeps_metadata:
            return hook(key, content)
        if self.metadata_with_writes:
            return hook(key, content, metadata=metadata)
        stored = hook(key, content)
        if metadata.fields():
            self._set_metadata(
                key,
                mode=metadata.mode,
                uid=metadata.uid,
                gid=metadata.gid,
                mtime=metadata.mtime,
                atime=None,
            )
        return stored

    # ------------------------------------------------------------------ extensions

    def stat(self, key: str) -> KeyInfo:
        """Return the size (and last-modified time, where known) of *key* without reading it.

        ``KeyError`` if *key* does not exist.
        """
        self._check_valid_key(key)
        return self._stat(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to *length* bytes of *key*'s value starting at byte *start*.

        Fewer bytes come back at the end of the value, none past it. ``KeyError`` if *key*
        does not exist; ``ValueError`` for a negative *start* or *length*.
        """
        self._check_valid_key(key)
        if start < 0 or length < 0:
            raise ValueError(f"start and length must not be negative: {start}, {length}")
        if length == 0:
            if not self._has_key(key):
                raise KeyNotFoundError(key)
            return b""
        return self._get_range(key, start, length)

    def iter_level(self, prefix: str = "", delimiter: str = SEPARATOR) -> Iterator[KeyInfo]:
        """Iterate over one level of the hierarchy below *prefix*.

        Yields a :class:`KeyInfo` for each key directly below *prefix* (no *delimiter*
        after the prefix) and one with ``is_prefix=True`` for each distinct deeper prefix,
        its ``key`` ending with *delimiter*. Empty directories kept with
        :meth:`put_directory` appear as prefixes. *prefix* is usually ``""`` or ends with
        *delimiter*. Sizes are filled where ``listing_has_sizes`` is set.
        """
        check_prefix(prefix)
        if not delimiter:
            raise ValueError("delimiter must not be empty")
        return self._iter_level(prefix, delimiter)

    def iter_prefixes(self, delimiter: str = SEPARATOR, prefix: str = "") -> Iterator[str]:
        """minimalkv's one-level listing: keys and common prefixes directly below *prefix*."""
        for entry in self.iter_level(prefix, delimiter):
            yield entry.key

    def copy(self, source: str, dest: str) -> str:
        """Copy the value of *source* to *dest* (replacing it) and return *dest*.

        Server-side where ``supports_server_copy`` is set. ``KeyError`` if *source* is missing.
        """
        self._check_valid_key(source)
        self._check_valid_key(dest)
        if source == dest:
            # Nothing to do, and several servers refuse to copy an object onto itself.
            if not self._has_key(source):
                raise KeyNotFoundError(source)
            return dest
        return self._copy(source, dest)

    def move(self, source: str, dest: str) -> str:
        """Move *source* to *dest* (replacing it) and return *dest*.

        Not atomic on most backends: a copy, then a delete of *source*. ``KeyError`` if
        *source* is missing.
        """
        self._check_valid_key(source)
        self._check_valid_key(dest)
        if source == dest:
            # A copy then a delete of the source would delete the value itself.
            if not self._has_key(source):
                raise KeyNotFoundError(source)
            return dest
        return self._move(source, dest)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key of *keys*; missing keys are not an error.

        Every key is checked before anything is deleted. Stores whose API deletes many
        keys in one request use it (S3: DeleteObjects, 1,000 keys a request); the default
        deletes one by one, in parallel on remote stores. Not atomic: when the store
        fails part-way, :class:`~kvfs.errors.BackendError` is raised and some keys may be
        gone.
        """
        keys = list(keys)
        for key in keys:
            self._check_valid_key(key)
        if keys:
            self._delete_many(keys)

    def move_directory(self, source: str, dest: str) -> str:
        """Move the directory *source* (every key below ``source/``, and its marker) to *dest*.

        A key below *dest* with the same name is replaced; other keys below *dest* stay.
        A value named *source* itself (where ``allows_key_and_prefix``) is not moved.
        Returns *dest*. ``KeyError`` if *source* is not a directory; ``ValueError`` if
        *dest* lies below *source*. Atomic only where the backend renames natively
        (:class:`~kvfs.fs.FilesystemStore`: one ``rename(2)``); elsewhere every value is
        copied, in parallel on remote stores, and the sources are deleted afterwards, so
        a failure part-way leaves the values in both places, never in neither.
        """
        self._check_valid_key(source)
        self._check_valid_key(dest)
        if dest == source or dest.startswith(source + SEPARATOR):
            if dest == source and self._has_directory(source):
                return dest
            raise InvalidKeyError(f"cannot move directory {source!r} into itself ({dest!r})")
        return self._move_directory(source, dest)

    def put_directory(self, key: str) -> None:
        """Keep an (empty) directory *key*, so it is listed by :meth:`iter_level`.

        Stores without ``supports_directories`` raise ``NotImplementedError``.
        """
        self._check_valid_key(key)
        self._require_directories()
        self._put_directory(key)

    def delete_directory(self, key: str) -> None:
        """Remove the directory marker *key*, if any. Keys below it are left alone."""
        self._check_valid_key(key)
        self._require_directories()
        self._delete_directory(key)

    def has_directory(self, key: str) -> bool:
        """Return whether *key* is a directory: a kept marker, or any key below ``key/``."""
        self._check_valid_key(key)
        return self._has_directory(key)

    def describe(self, key: str) -> KeyInfo | None:
        """What *key* names: a directory, a value, or nothing.

        Returns an ``is_prefix`` :class:`KeyInfo` named ``key + "/"`` when *key* is a
        directory (:meth:`has_directory`; a directory wins over a value of the same name
        where ``allows_key_and_prefix``), else the :meth:`stat` of the value, else None.
        The default asks :meth:`stat` and, where needed, :meth:`has_directory`; object
        stores answer with one listing request. ``ValueError`` for an invalid key.
        """
        self._check_valid_key(key)
        return self._describe(key)

    def symlink(self, key: str, target: str) -> str:
        """Make *key* a symbolic link to *target* and return *key*.

        The link is stored as rclone's ``--links`` stores one: a small value named
        ``key + ".rclonelink"`` (:data:`LINK_SUFFIX`) holding *target* (UTF-8), so the
        mount, ``kvfs ls -l`` and ``rclone --links`` show it as a link and every other
        reader sees a plain key. *target* is any path (relative or absolute, it need not
        exist), not empty and without NUL. ``ValueError`` for an invalid key or target
        (also when ``key + ".rclonelink"`` is too long for the store).
        """
        self._check_valid_key(key)
        if not isinstance(target, str) or not target or "\0" in target:
            raise InvalidLinkTargetError(f"a link target must be a non-empty str without NUL, not {target!r}")
        self.put(key + LINK_SUFFIX, target.encode("utf-8", "surrogateescape"))
        return key

    def readlink(self, key: str) -> str:
        """The target of the symbolic link *key* (see :meth:`symlink`).

        ``KeyError`` if *key* is not a link; ``ValueError`` for an invalid key.
        """
        self._check_valid_key(key)
        return self.get(key + LINK_SUFFIX).decode("utf-8", "surrogateescape")

    def is_link(self, key: str) -> bool:
        """Whether *key* is a symbolic link (:meth:`symlink`)."""
        self._check_valid_key(key)
        return (key + LINK_SUFFIX) in self

    def set_metadata(
        self,
        key: str,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        mtime: float | None = None,
        atime: float | None = None,
    ) -> None:
        """Change the POSIX metadata kept for *key*, a value or a directory.

        *mode* is the permission bits (``0`` to ``0o7777``), *uid* and *gid* the owner,
        *mtime* and *atime* POSIX timestamps in seconds; what is None stays as it is.
        Raises ``ValueError`` for a value out of range (before touching the backend),
        ``KeyError`` when *key* is neither a value nor a directory, a
        :class:`~kvfs.errors.BackendError` with ``EPERM`` where the backend may not make
        the change (a new owner, for a store not run by root), and ``NotImplementedError``
        for a store without ``keeps_metadata``.
        """
        self._check_valid_key(key)
        if not self.keeps_metadata:
            raise NotImplementedError(f"{type(self).__name__} does not keep modes, owners or times")
        check_metadata(mode, uid, gid, mtime, atime)
        self._set_metadata(key, mode=mode, uid=uid, gid=gid, mtime=mtime, atime=atime)

    def describe_root(self) -> KeyInfo | None:
        """What the store keeps about its root directory, or None where it keeps nothing.

        On a store that ``keeps_metadata``, an ``is_prefix`` :class:`KeyInfo` with the key
        ``""`` and the root's mode, owner and mtime where known (the mount shows them for
        its top directory). None on other stores, and where the root does not exist yet.
        """
        return self._describe_root()

    def new_staging_file(self, key: str) -> IO[bytes]:
        """A new, empty local file to write a future value of *key* into.

        The file is readable, writable and seekable and has a descriptor (``fileno``):
        it can be written at any offset and truncated. Nothing is stored, and no listing
        shows it, until :meth:`commit_staging_file`; closing it uncommitted discards it,
        and where the backend can, so does the end of the process. It may be committed
        under another key of the same store. Stores without ``supports_staging`` raise
        ``NotImplementedError``.
        """
        self._check_valid_key(key)
        self._require_staging()
        return self._new_staging_file(key)

    def commit_staging_file(self, key: str, file: IO[bytes], *, metadata: Metadata | None = None) -> str:
        """Make *file*, from this store's :meth:`new_staging_file`, the value of *key*; return *key*.

        Atomic, as ``put``: a reader sees the old value or the whole new one. On success
        *file* is closed, since it now is the stored value, which nothing may change in
        place. On failure nothing is stored and *file* stays open as it was, to be
        committed again or closed. Raises ``ValueError`` for a file that is not an open
        staging file of this store, what ``put`` raises for the key, and
        ``NotImplementedError`` without ``supports_staging``. *metadata* as for :meth:`put`.
        """
        self._check_valid_key(key)
        self._require_staging()
        if metadata is None:
            return self._commit_staging_file(key, file)
        return self._write_with_metadata(self._commit_staging_file, key, file, metadata)

    def open_writer(self, key: str, *, metadata: Metadata | None = None) -> ValueWriter:
        """A :class:`~kvfs.writer.ValueWriter` for a new value of *key*, written in order.

        ``write`` appends bytes, ``close()`` stores them as the value of *key*,
        atomically, as ``put`` does (the old value stays until then; nothing half
        written is ever visible), and ``abort()`` discards them. Every store has one:
        by default the value is collected in a local file (the store's staging file
        where it has one) and stored at the close; a store with ``streams_writes``
        sends it while it is written (S3: parts of a multipart upload) and keeps only
        ``writer.memory`` bytes at most. Raises what ``put`` raises for the key
        (``ValueError`` for an invalid one, :class:`~kvfs.errors.ReadOnlyError` on a
        read-only store); the writer raises the store's failures (see
        :class:`~kvfs.writer.ValueWriter`). *metadata* is stored with the value as
        :meth:`put` stores it (``TypeError`` for anything but a :class:`Metadata`).
        """
        self._check_valid_key(key)
        if metadata is not None:
            _check_metadata_type(metadata)
        if not self.supports_writes:
            raise ReadOnlyError(f"cannot open a writer: {type(self).__name__} is read-only")
        if metadata is None or not self.keeps_metadata:
            return self._open_writer(key)
        return self._open_writer(key, metadata=metadata)

    def sync(self, key: str) -> None:
        """Make what is stored under *key* durable: its value, or its absence after a delete.

        After ``sync`` returns, the last completed ``put``, ``put_file``,
        ``commit_staging_file``, ``move`` or ``delete`` of *key* survives a crash of the
        machine or a power failure. A missing key is not an error. Stores on a server
        do nothing: a write is as durable as the server makes it when it returns (S3,
        GCS and databases commit it; Redis as its persistence settings say);
        :class:`~kvfs.fs.FilesystemStore` calls ``fsync`` on the value's file and its
        directories. Raises ``ValueError`` for an invalid key and
        :class:`~kvfs.errors.BackendError` when the backend fails.
        """
        self._check_valid_key(key)
        self._sync(key)

    def check(self) -> None:
        """Make sure the store can be used, with one cheap request; change nothing.

        Returns None when the backend answers. Raises
        :class:`~kvfs.errors.BackendError` (an ``OSError``), with a message saying what
        is wrong, when the store cannot be reached (a server that does not answer),
        refuses the credentials, or does not exist (a missing bucket or directory):
        what ``kvfs mount`` runs before mounting. The default lists one key; backends
        ask something cheaper (a bucket's ``HEAD``, a ``PING``).
        """
        self._check()

    def close(self) -> None:
        """Release connections and other resources. The store is unusable afterwards."""

    def __enter__(self) -> KeyValueStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ hooks

    def _delete(self, key: str) -> None:
        """Delete *key*; a missing key is not an error. Backends must override."""
        raise NotImplementedError

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        """Iterate over the stored names starting with *prefix*, markers included.

        Backends override this, or (simplekv style) :meth:`iter_keys` itself.
        """
        if type(self).iter_keys is KeyValueStore.iter_keys:
            raise NotImplementedError(f"{type(self).__name__} must implement iter_keys")
        return self.iter_keys(prefix)

    def _open(self, key: str) -> IO[bytes]:
        """Open *key* for reading; ``KeyError`` if missing. Backends must override."""
        raise NotImplementedError

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        """Store all of *file* (read until EOF) under *key*. Backends must override."""
        raise NotImplementedError

    def _get(self, key: str) -> bytes:
        with self._open(key) as file:
            return file.read()

    def _open_with_info(self, key: str) -> tuple[IO[bytes], KeyInfo | None]:
        return self._open(key), None

    def _get_file(self, key: str, file: IO[bytes]) -> None:
        with self._open(key) as source:
            shutil.copyfileobj(source, file, CHUNK_SIZE)

    def _get_filename(self, key: str, filename: str) -> None:
        # Open the source first: a missing key must not leave an empty target file.
        with self._open(key) as source:
            _write_file_atomically(filename, source)

    def _has_key(self, key: str) -> bool:
        for name in self._iter_keys(key):
            if name == key:
                return True
        return False

    def _put(self, key: str, data: bytes) -> str:
        return self._put_file(key, io.BytesIO(data))

    def _put_filename(self, key: str, filename: str, metadata: Metadata | None = None) -> str:
        # Called with *metadata* only on a store with metadata_with_writes, whose _put_file takes it.
        with open(filename, "rb") as file:
            return self._put_file(key, file) if metadata is None else self._put_file(key, file, metadata=metadata)

    def _stat(self, key: str) -> KeyInfo:
        with self._open(key) as file:
            size = file.seek(0, io.SEEK_END)
        return KeyInfo(key, size)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        with self._open(key) as file:
            file.seek(start)
            return file.read(length)

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        return group_level(prefix, delimiter, (KeyInfo(name) for name in self._iter_keys(prefix)))

    def _copy(self, source: str, dest: str) -> str:
        with self._open(source) as file:
            return self._put_file(dest, file)

    def _move(self, source: str, dest: str) -> str:
        self._copy(source, dest)
        self._delete(source)
        return dest

    def _delete_many(self, keys: list[str]) -> None:
        run_parallel(self._delete, keys, self.parallel_requests if self.is_remote else 1)

    def _move_directory(self, source: str, dest: str) -> str:
        below = source + SEPARATOR
        names = list(self._iter_keys(below))
        values = [name[len(below) :] for name in names if not name.endswith(DIRECTORY_MARKER_SUFFIX)]
        if not names and not self._has_directory(source):
            raise KeyNotFoundError(source)
        workers = self.parallel_requests if self.is_remote else 1
        cls = type(self)
        if cls._move is KeyValueStore._move and self.supports_directories and self._markers_are_keys():
            # The one listing gave the markers too: they are made under *dest* along with
            # the copies and deleted with the values, in the same batch (no second
            # listing, no request one after another). A failure leaves every source.
            markers = [name[len(below) :] for name in names if name.endswith(DIRECTORY_MARKER_SUFFIX)]
            made = [dest] + [dest + SEPARATOR + name[: -len(DIRECTORY_MARKER_SUFFIX)] for name in markers if name]
            steps: list[tuple[str | None, str]] = [(None, key) for key in made]
            steps += [(below + name, dest + SEPARATOR + name) for name in values]
            run_parallel(lambda step: self._move_step(*step), steps, workers)
            self._delete_many([below + name for name in values] + [below + name for name in markers])
            return dest
        if cls._move is KeyValueStore._move:
            # Every copy first, then the deletes (batched where the store can): a failure
            # leaves a value in both places, never in neither.
            run_parallel(lambda name: self._copy(below + name, dest + SEPARATOR + name), values, workers)
            self._delete_many([below + name for name in values])
        else:  # the backend's own move (a rename, an update of a row) of each value
            run_parallel(lambda name: self._move(below + name, dest + SEPARATOR + name), values, workers)
        if self.supports_directories:
            self._move_markers(source, dest)
        return dest

    def _markers_are_keys(self) -> bool:
        """Whether a directory marker is the key ``NAME/`` (the core's own marker hooks)."""
        cls = type(self)
        default = KeyValueStore
        return cls._put_directory is default._put_directory and cls._delete_directory is default._delete_directory

    def _move_step(self, source: str | None, dest: str) -> None:
        """One step of a directory's move: a copy of *source* to *dest*, or (None) *dest*'s marker."""
        if source is None:
            self._put_directory(dest)
        else:
            self._copy(source, dest)

    def _move_markers(self, source: str, dest: str) -> None:
        """Recreate the (now empty) directories below *source* under *dest*, deepest last removed."""
        self._put_directory(dest)
        for info in list(self._iter_level(source + SEPARATOR, SEPARATOR)):
            if info.is_prefix:
                name = info.key[len(source) + 1 : -1]
                self._move_markers(source + SEPARATOR + name, dest + SEPARATOR + name)
        self._delete_directory(source)

    def _sync(self, key: str) -> None:
        """Make *key*'s last write durable. The default does nothing: a put is durable when it returns."""

    def _check(self) -> None:
        """Raise BackendError unless the store answers: by default, a listing of one key."""
        names = self._iter_keys("")
        try:
            next(iter(names), None)
        finally:
            close = getattr(names, "close", None)
            if close is not None:
                close()

    def _new_staging_file(self, key: str) -> IO[bytes]:
        """A new staging file for *key* (stores with ``supports_staging`` override)."""
        raise NotImplementedError

    def _commit_staging_file(self, key: str, file: IO[bytes]) -> str:
        """Store *file* as *key* atomically and close it (stores with ``supports_staging`` override)."""
        raise NotImplementedError

    def _open_writer(self, key: str, metadata: Metadata | None = None) -> ValueWriter:
        """A writer of *key*'s new value; stores that stream uploads override (``streams_writes``).

        *metadata* (only given where ``keeps_metadata``) goes with the value.
        """
        return StagedValueWriter(self, key, metadata)

    def _set_metadata(
        self,
        key: str,
        *,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        mtime: float | None,
        atime: float | None,
    ) -> None:
        """Change *key*'s metadata (stores with ``keeps_metadata`` override; called only for them)."""
        raise NotImplementedError(f"{type(self).__name__} sets keeps_metadata but not _set_metadata")

    def _describe_root(self) -> KeyInfo | None:
        return None

    def _require_staging(self) -> None:
        if not self.supports_staging:
            raise NotImplementedError(f"{type(self).__name__} cannot stage values in local files")

    def _require_directories(self) -> None:
        if not self.supports_directories:
            raise NotImplementedError(f"{type(self).__name__} cannot keep empty directories")

    # Default markers for stores that hold arbitrary names: ``key/`` with an empty value.
    def _put_directory(self, key: str) -> None:
        self._put(key + DIRECTORY_MARKER_SUFFIX, b"")

    def _delete_directory(self, key: str) -> None:
        self._delete(key + DIRECTORY_MARKER_SUFFIX)

    def _has_directory(self, key: str) -> bool:
        for _ in self._iter_keys(key + SEPARATOR):
            return True
        return False

    def _describe(self, key: str) -> KeyInfo | None:
        try:
            info: KeyInfo | None = self._stat(key)
        except KeyError:
            info = None
        if (info is None or self.allows_key_and_prefix) and self._has_directory(key):
            return KeyInfo(key + SEPARATOR, is_prefix=True)
        return info


def group_level(prefix: str, delimiter: str, entries: Iterable[KeyInfo]) -> Iterator[KeyInfo]:
    """Turn a flat listing below *prefix* into one level, as :meth:`~KeyValueStore.iter_level`.

    *entries* are stored names (markers included) starting with *prefix*, with whatever
    sizes the backend's flat listing has; entries directly below *prefix* pass through,
    deeper ones collapse into one ``is_prefix`` entry per distinct sub-prefix.
    """
    seen: set[str] = set()
    for entry in entries:
        rest = entry.key[len(prefix):]
        cut = rest.find(delimiter)
        if cut == -1:
            if rest:
                yield entry
            continue
        sub = prefix + rest[: cut + len(delimiter)]
        if sub not in seen and len(sub) > len(prefix):
            seen.add(sub)
            yield KeyInfo(sub, is_prefix=True)


def run_parallel(function: Callable[[_Item], object], items: Sequence[_Item], workers: int) -> None:
    """Call *function* on every item, *workers* at a time; re-raise the first failure.

    With one worker (or one item) the calls run in this thread, in order. Otherwise every
    call is made even when one fails (the caller learns of the first failure), so that
    a half-done bulk operation is as complete as the store allows.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            function(item)
        return
    from .transfer import parallel_map  # the transfer module imports this one

    first: Exception | None = None
    for _, _, error in parallel_map(function, items, workers):
        if error is not None and first is None:
            first = error
    if first is not None:
        raise first


def chained_pages(
    fetch: Callable[[Any], _Page], next_token: Callable[[_Page], Any], *, prefetch: bool = True
) -> Iterator[_Page]:
    """The pages of a listing chained by continuation tokens (S3, GCS), in order.

    ``fetch(None)`` gets the first page, ``fetch(token)`` the one after the page whose
    ``next_token(page)`` is *token* (None: the last page). With *prefetch* the next page
    is requested in a thread while the caller reads the current one: the only part of
    such a listing that can run in parallel. Whatever a fetch raises is raised here.
    """
    page = fetch(None)
    while True:
        token = next_token(page)
        if token is None:
            yield page
            return
        following = _Fetch(fetch, token) if prefetch else None
        yield page
        page = following.result() if following is not None else fetch(token)


class _Fetch(threading.Thread):
    """``fetch(token)`` running in a thread; :meth:`result` waits for it."""

    def __init__(self, fetch: Callable[[Any], Any], token: Any) -> None:
        super().__init__(name="kvfs-next-page", daemon=True)
        self._call = lambda: fetch(token)
        self._outcome: tuple[bool, Any] = (False, None)
        self.start()

    def run(self) -> None:
        try:
            self._outcome = (True, self._call())
        except BaseException as error:  # raised in the reader's thread
            self._outcome = (False, error)

    def result(self) -> Any:
        self.join()
        succeeded, value = self._outcome
        if not succeeded:
            raise value
        return value


def _write_file_atomically(filename: str, source: IO[bytes]) -> None:
    """Stream *source* into *filename* via a temporary file and a rename.

    Special files (a terminal, ``/dev/stdout``, a FIFO) are written in place.
    """
    try:
        regular = not os.path.exists(filename) or os.path.isfile(filename)
    except OSError:
        regular = False
    if not regular:
        with open(filename, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK_SIZE)
        return
    # A short temporary name, so that a file whose name is as long as a name can be
    # can still be written.
    temporary = os.path.join(os.path.dirname(os.path.abspath(filename)), f".kvfs-{os.urandom(8).hex()}.tmp")
    try:
        target = open(temporary, "wb")  # noqa: SIM115 - closed below
    except OSError as error:
        # Name the file the caller gave, not the temporary one (as simplekv does).
        raise type(error)(error.errno, f"Error opening {filename} for writing: {error.strerror}") from None
    try:
        with target:
            shutil.copyfileobj(source, target, CHUNK_SIZE)
        os.replace(temporary, filename)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


__all__ = [
    "KeyValueStore",
    "CAPABILITY_FLAGS",
    "HOOKS",
    "Hook",
    "Rebuild",
    "KeyInfo",
    "Metadata",
    "check_metadata",
    "FileOrFilename",
    "CHUNK_SIZE",
    "DIRECTORY_MARKER_SUFFIX",
    "group_level",
]
