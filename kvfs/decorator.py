"""Store decorators: a store that wraps another store and changes one thing about it.

A decorator is itself a :class:`~kvfs.store.KeyValueStore`: its public methods validate
their arguments as every store's do, then its hooks call the *public* methods of the
wrapped store, so the wrapped store's own fast paths (server-side copy, native ranges,
one-call listings) are used rather than the core's slow defaults. The wrapped store's
capability flags are forwarded, so whoever looks at the decorator (the mount, the
contract suite) sees what the store underneath can do.

* :class:`StoreDecorator` passes everything through, and gives access to attributes of
  the wrapped store it does not define itself (``decorator.d``, ``decorator.bucket``).
* :class:`PrefixDecorator` shows the keys below a prefix as a store of their own.
* :class:`URLEncodeKeysDecorator` accepts any ``str`` as a key by percent-encoding it.
* :class:`ReadOnlyDecorator` refuses every write with :class:`~kvfs.errors.ReadOnlyError`.

As in simplekv, a decorator is a convenience, not a security boundary: whoever holds the
wrapped store can still write to it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, NoReturn
from urllib.parse import quote_plus, unquote_plus

from .errors import InvalidKeyError, KeyTooLongError, ReadOnlyError
from .keys import SEPARATOR, check_key, check_prefix
from .mixins import TTL
from .store import CAPABILITY_FLAGS, HOOKS, FileOrFilename, Hook, KeyInfo, KeyValueStore, Metadata
from .writer import ValueWriter


def _forwarded(flag: str) -> Any:
    """A read-only property that returns the wrapped store's value of *flag*."""

    def get(self: StoreDecorator) -> Any:
        return getattr(self._dstore, flag)

    return property(get, doc=f"The wrapped store's ``{flag}``.")


class StoreDecorator(KeyValueStore):
    """Wraps *store* and passes every call through to it (simplekv's base decorator).

    Subclasses override the hooks they change. Keys are checked by the wrapped store's
    rule (so the same keys are valid, and the same ``ValueError`` raised), every
    capability flag and key limit is the wrapped store's, and attributes the decorator
    does not define are looked up on the wrapped store (``_dstore``, as in simplekv).
    ``put`` and ``put_file`` accept ``ttl_secs`` and pass it on when the wrapped store has
    ``ttl_support``; given to a store without it, they raise ``TypeError``.
    :meth:`close` closes the wrapped store.
    """

    # Every capability flag and key limit is the wrapped store's (installed below, from
    # the core's CAPABILITY_FLAGS), except staging: a staged file would reach the
    # wrapped store without passing through the decorator, so decorators never offer it.
    # Nor streamed writes: their writer is the core's, storing through the decorator's
    # put_file at the close (key-mapping decorators pass the wrapped store's on).
    supports_staging = False
    streams_writes = False

    def __init__(self, store: KeyValueStore) -> None:
        self._dstore = store

    def __getattr__(self, name: str) -> Any:
        # Only called for names the decorator lacks. Dunders are never forwarded, and
        # before __init__ ran (copy, pickle) there is no wrapped store to ask.
        store = self.__dict__.get("_dstore")
        if store is None or (name.startswith("__") and name.endswith("__")):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(store, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._dstore!r})"

    def _check_valid_key(self, key: object) -> None:
        # The keys are the wrapped store's keys, so its rule and limits decide.
        self._dstore._check_valid_key(key)

    # ------------------------------------------------------------------ TTL-aware writes

    def put(self, key: str, data: bytes, ttl_secs: TTL = None, *, metadata: Metadata | None = None) -> str:
        """Store *data* under *key*; *ttl_secs* is passed on to a store with ``ttl_support``,
        *metadata* to one that ``keeps_metadata`` (see :meth:`KeyValueStore.put`)."""
        self._check_valid_key(key)
        return self._put(key, self._check_valid_value(data), ttl_secs, **self._kept(metadata))

    def put_file(
        self, key: str, file: FileOrFilename, ttl_secs: TTL = None, *, metadata: Metadata | None = None
    ) -> str:
        """Store the contents of *file* under *key*; *ttl_secs* and *metadata* as for :meth:`put`."""
        self._check_valid_key(key)
        if isinstance(file, (str, os.PathLike)):
            return self._put_filename(key, os.fspath(file), ttl_secs, **self._kept(metadata))
        return self._put_file(key, file, ttl_secs, **self._kept(metadata))

    def _kept(self, metadata: Metadata | None) -> dict[str, Metadata]:
        """The hooks' ``metadata`` keyword where this decorator keeps *metadata*, else none.

        Passed only when there is some, so that decorators written before it (hooks
        without the keyword) keep working. Anything but a :class:`Metadata` raises.
        """
        if metadata is None:
            return {}
        if not isinstance(metadata, Metadata):
            raise TypeError(f"metadata must be a kvfs.Metadata, not {type(metadata).__name__}")
        return {"metadata": metadata} if self.keeps_metadata else {}

    def _ttl_arguments(self, ttl_secs: TTL) -> dict[str, TTL]:
        """The keyword arguments that pass *ttl_secs* on, none when it was not given."""
        if ttl_secs is None:
            return {}
        if not self._dstore.ttl_support:
            raise TypeError(f"{type(self._dstore).__name__} does not support ttl_secs")
        return {"ttl_secs": ttl_secs}

    def close(self) -> None:
        """Close the wrapped store."""
        self._dstore.close()

    # ------------------------------------------------------------------ hooks
    # Every hook of the core calls the wrapped store's public method (installed below,
    # from the core's HOOKS); the writes pass ttl_secs on.

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        return self._dstore.put(key, data, **self._write_arguments(ttl_secs, metadata))  # type: ignore[call-arg]

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        return self._dstore.put_file(key, file, **self._write_arguments(ttl_secs, metadata))  # type: ignore[call-arg]

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        return self._dstore.put_file(key, filename, **self._write_arguments(ttl_secs, metadata))  # type: ignore[call-arg]

    def _write_arguments(self, ttl_secs: TTL, metadata: Metadata | None) -> dict[str, Any]:
        """The keyword arguments of the wrapped store's write: the ttl and metadata given."""
        arguments: dict[str, Any] = dict(self._ttl_arguments(ttl_secs))
        if metadata is not None:
            arguments["metadata"] = metadata
        return arguments


def _passing_through(name: str, hook: Hook) -> Callable[..., Any]:
    """A hook that calls the wrapped store's public method *hook.method* with the same arguments."""

    def passed_through(self: StoreDecorator, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._dstore, hook.method)(*args, **kwargs)

    passed_through.__name__ = passed_through.__qualname__ = name
    passed_through.__doc__ = f"Calls the wrapped store's ``{hook.method}``."
    passed_through.passes_to = hook.method  # type: ignore[attr-defined]
    return passed_through


def _install(cls: type, make: Callable[[str, Hook], Callable[..., Any]]) -> None:
    """Give *cls* every forwarded hook of the core it does not define itself, made by *make*."""
    for name, hook in HOOKS.items():
        if hook.forwarded and name not in cls.__dict__:
            setattr(cls, name, make(name, hook))


for _flag in CAPABILITY_FLAGS:
    if _flag not in StoreDecorator.__dict__:
        setattr(StoreDecorator, _flag, _forwarded(_flag))
_install(StoreDecorator, _passing_through)


class KeyTransformingDecorator(StoreDecorator):
    """A decorator that stores each key under another name in the wrapped store.

    Subclasses define the mapping: :meth:`_map_key` (outer key to inner key),
    :meth:`_unmap_key` (back), :meth:`_map_key_prefix` (a listing prefix) and
    :meth:`_map_delimiter` (a listing delimiter). Every key-taking call, listings,
    :meth:`stat` and :meth:`iter_level` entries, and the keys ``put``/``copy``/``move``
    return are mapped; ``url_for`` is there exactly when the wrapped store has it.
    """

    def _map_key(self, key: str) -> str:
        return key

    def _map_key_prefix(self, prefix: str) -> str:
        return prefix

    def _map_delimiter(self, delimiter: str) -> str:
        return delimiter

    def _unmap_key(self, key: str) -> str:
        return key

    def _filter(self, key: str) -> bool:
        """Whether an inner key belongs to this view (simplekv's hook)."""
        return True

    def __getattr__(self, name: str) -> Any:
        if name == "url_for":
            # Present only when the wrapped store gives URLs, so hasattr() tells the truth.
            inner_url_for: Callable[[str], str] = super().__getattr__(name)

            def url_for(key: str) -> str:
                self._check_valid_key(key)
                return inner_url_for(self._map_key(key))

            return url_for
        return super().__getattr__(name)

    # Outer keys follow the key rule, checked against this decorator's own limits.
    _check_valid_key = KeyValueStore._check_valid_key

    def _unmap_info(self, info: KeyInfo) -> KeyInfo:
        return dataclasses.replace(info, key=self._unmap_key(info.key))

    # Every hook of the core maps its keys, prefixes and delimiters by its entry in the
    # core's HOOKS, calls StoreDecorator's hook (the wrapped store's public method, ttl
    # included) and maps what comes back (installed below).

    def _map_argument(self, kind: str, value: Any) -> Any:
        if kind == "key":
            return self._map_key(value)
        if kind == "prefix":
            return self._map_key_prefix(value)
        if kind == "delimiter":
            return self._map_delimiter(value)
        return value

    def _describe_root(self) -> KeyInfo | None:
        return None  # the view's root is a part of the wrapped store: not known here

    # Values are stored as they are, under a mapped key: the wrapped store's writer
    # (S3's streamed multipart upload) serves, and what it can do shows.
    streams_writes = _forwarded("streams_writes")

    def _open_writer(self, key: str, metadata: Metadata | None = None) -> ValueWriter:
        writer = self._dstore.open_writer(self._map_key(key), metadata=metadata)
        writer.key = key  # named as the caller knows it; writers store under their own
        return writer

    def _delete_many(self, keys: list[str]) -> None:
        # A plain mapping of keys: the wrapped store's batches (S3's DeleteObjects) apply.
        self._dstore.delete_many([self._map_key(key) for key in keys])

    def _unmap_result(self, kind: str, result: Any) -> Any:
        if kind == "key":
            return self._unmap_key(result)
        if kind == "info":
            return None if result is None else self._unmap_info(result)
        if kind == "keys":
            return (self._unmap_key(name) for name in result if self._filter(name))
        if kind == "infos":
            return (self._unmap_info(entry) for entry in result if self._filter(entry.key))
        return result


def _mapping_keys(name: str, hook: Hook) -> Callable[..., Any]:
    """A hook that maps its keys, calls StoreDecorator's hook *name*, and maps the result back."""
    method = hook.method
    kinds = hook.arguments
    result = hook.result
    inner: Callable[..., Any] = getattr(StoreDecorator, name)
    if getattr(inner, "passes_to", None) == method:
        # A plain pass-through: call the wrapped store's method directly (hot paths).
        def direct(self: StoreDecorator, *args: Any, **kwargs: Any) -> Any:
            return getattr(self._dstore, method)(*args, **kwargs)

        inner = direct

    if kinds[:1] == ("key",) and not any(kinds[1:]):
        # The usual shape, the key first and nothing else to map: kept short for speed.
        def mapped(self: KeyTransformingDecorator, key: str, *rest: Any, **kwargs: Any) -> Any:
            answer = inner(self, self._map_key(key), *rest, **kwargs)
            return self._unmap_result(result, answer) if result else answer

    else:

        def mapped(self: KeyTransformingDecorator, *args: Any, **kwargs: Any) -> Any:
            inner_args = [self._map_argument(kind, value) for kind, value in zip(kinds, args)]
            inner_args.extend(args[len(kinds) :])
            return self._unmap_result(result, inner(self, *inner_args, **kwargs))

    mapped.__name__ = mapped.__qualname__ = name
    mapped.__doc__ = f"Calls the wrapped store's ``{method}`` with mapped keys."
    return mapped


_install(KeyTransformingDecorator, _mapping_keys)


class PrefixDecorator(KeyTransformingDecorator):
    """The keys of *store* that start with *prefix*, without the prefix (simplekv's order).

    ``PrefixDecorator("photos/", store)`` stores ``a.jpg`` as ``photos/a.jpg``; keys,
    listings, :meth:`stat` and :meth:`iter_level` entries come back without the prefix,
    and keys outside it are invisible. A prefix ending in ``/`` makes the view a
    sub-directory of *store* (the usual choice); without it, ``PrefixDecorator("a", s)``
    also sees ``ab`` (as ``b``), as in simplekv.

    Keys are validated before the prefix is added, so ``"../x"`` can never reach outside
    the prefix. ``max_key_length`` is the wrapped store's minus the prefix length.
    :class:`~kvfs.errors.InvalidKeyError` is raised at construction for a *prefix* that
    cannot begin a valid key (such as ``"/a"`` or ``"a//"``).
    """

    def __init__(self, prefix: str, store: KeyValueStore) -> None:
        if type(prefix) is not str:
            raise InvalidKeyError(f"a prefix must be a str, not {type(prefix).__name__}")
        if prefix:
            # A valid key appended to the prefix must give a valid key of the store.
            check_key(prefix + "x", store.max_key_length, store.max_component_length)
        super().__init__(store)
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.prefix!r}, {self._dstore!r})"

    @property
    def max_key_length(self) -> int:  # type: ignore[override]
        """The wrapped store's limit minus the length of the prefix."""
        return int(self._dstore.max_key_length) - len(self.prefix)

    def _filter(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def _map_key(self, key: str) -> str:
        return self.prefix + key

    def _map_key_prefix(self, prefix: str) -> str:
        return self.prefix + prefix

    def _unmap_key(self, key: str) -> str:
        return key[len(self.prefix) :]


class URLEncodeKeysDecorator(KeyTransformingDecorator):
    """Accepts any non-empty ``str`` as a key, percent-encoded for the wrapped store.

    Keys are encoded as simplekv and minimalkv do (:func:`urllib.parse.quote_plus`), so
    data they wrote reads back the same: ``"a b/ä"`` is stored as ``"a+b%2F%C3%A4"``.
    The one addition is that the keys ``"."`` and ``".."`` are stored as ``"%2E"`` and
    ``"%2E%2E"``, since no kvfs store accepts them.

    ``/`` is encoded too, so the wrapped store holds one flat level of keys: any string is
    a key (``"a/"``, ``"/a"``, ``"a//b"`` included), and no key can name a directory of the
    wrapped store. :meth:`iter_level` still lists the *decoded* keys by *delimiter*: it
    reads the wrapped store's (flat) listing of every key below the prefix, with sizes
    where it has them, and groups them, so ``fast_level_listing`` is False (the listing
    costs as much as :meth:`iter_keys`). Empty directories cannot be kept
    (``supports_directories`` is False), and :meth:`has_directory` is True when a key
    starts with ``key + "/"``.

    Limits: an empty key, or one that is not a ``str``, raises
    :class:`~kvfs.errors.InvalidKeyError`. Each byte of a key's UTF-8 encoding takes at
    most three characters encoded, so ``max_key_length`` (counted in UTF-8 bytes) is a
    third of the longest key, or key component, the wrapped store accepts.
    """

    fast_level_listing = False
    supports_directories = False
    allows_key_and_prefix = True
    max_component_length = None

    @property
    def max_key_length(self) -> int:  # type: ignore[override]
        """A third of the wrapped store's key (or key component) limit, in UTF-8 bytes."""
        inner = self._dstore.max_component_length or self._dstore.max_key_length
        return min(inner, self._dstore.max_key_length) // 3

    def _check_valid_key(self, key: object) -> None:
        if not isinstance(key, str):
            raise InvalidKeyError(f"a key must be a str, not {type(key).__name__}: {key!r}")
        if not key:
            raise InvalidKeyError("a key must not be empty")
        limit = self.max_key_length
        size = len(key.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise KeyTooLongError(
                f"key is {size} bytes long (UTF-8), the limit of this store is {limit} bytes"
            )

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Iterate over the keys starting with *prefix*; keys ending in ``/`` included."""
        check_prefix(prefix)
        return self._iter_keys(prefix)

    def _map_key(self, key: str) -> str:
        encoded = quote_plus(key, safe="", errors="surrogatepass")
        if encoded in (".", ".."):
            encoded = encoded.replace(".", "%2E")
        return encoded

    def _map_key_prefix(self, prefix: str) -> str:
        # Encoding is character by character, so encoded prefixes select the same keys.
        return quote_plus(prefix, safe="", errors="surrogatepass")

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        # The wrapped store is flat, so its one-level listing ('/', native everywhere, with
        # sizes where it has them) is every key below the prefix; group them here.
        seen: set[str] = set()
        for entry in self._dstore.iter_level(self._map_key_prefix(prefix), SEPARATOR):
            key = self._unmap_key(entry.key)
            if entry.is_prefix or not key.startswith(prefix):
                continue  # a directory of the wrapped store: not written through this view
            cut = key.find(delimiter, len(prefix))
            if cut == -1:
                yield dataclasses.replace(entry, key=key)
                continue
            below = key[: cut + len(delimiter)]
            if below not in seen:
                seen.add(below)
                yield KeyInfo(below, is_prefix=True)

    def _unmap_key(self, key: str) -> str:
        return unquote_plus(key, errors="surrogatepass")

    def _has_directory(self, key: str) -> bool:
        # The wrapped store is flat: a directory is any key below ``key/``.
        return KeyValueStore._has_directory(self, key)

    # A directory here is not one of the wrapped store's: ask stat and has_directory above.
    _describe = KeyValueStore._describe


class ReadOnlyDecorator(StoreDecorator):
    """A read-only view of *store*: reads pass through, every write raises.

    ``put``, ``put_file``, ``delete``, ``copy``, ``move``, ``put_directory`` and
    ``delete_directory`` (and every hook of the core that writes) raise
    :class:`~kvfs.errors.ReadOnlyError` (an ``AttributeError`` with ``errno.EROFS``) before
    looking at their arguments, and ``supports_writes`` is False.
    Reads (``get``, ``open``, ``get_file``, ``in``, listings, ``stat``, ``get_range``,
    ``has_directory``) and ``url_for`` pass through with the wrapped store's fast paths.

    Other attributes of the wrapped store are *not* forwarded (``AttributeError``), as in
    simplekv, since a backend's own methods may write. simplekv raised ``AttributeError``
    for the write methods too, so ``ReadOnlyError`` is one, and the mount answers ``EROFS``.
    """

    supports_writes = False

    def __getattr__(self, name: str) -> Any:
        if name == "url_for":
            return super().__getattr__(name)
        raise AttributeError(
            f"{type(self).__name__} does not forward {name!r} (it might write to the store)"
        )

    def _refuse(self, operation: str) -> NoReturn:
        raise ReadOnlyError(f"cannot {operation}: {type(self._dstore).__name__} is read-only here")

    def put(self, key: str, data: bytes, ttl_secs: TTL = None, *, metadata: Metadata | None = None) -> str:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("put")

    def put_file(
        self, key: str, file: FileOrFilename, ttl_secs: TTL = None, *, metadata: Metadata | None = None
    ) -> str:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("put_file")

    def delete(self, key: str) -> None:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("delete")

    def copy(self, source: str, dest: str) -> str:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("copy")

    def move(self, source: str, dest: str) -> str:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("move")

    def put_directory(self, key: str) -> None:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("put_directory")

    def delete_directory(self, key: str) -> None:
        """Raise :class:`~kvfs.errors.ReadOnlyError`."""
        self._refuse("delete_directory")

    # Every hook of the core that writes refuses too, for code that calls hooks directly
    # and for public methods added to the core later (installed below, from HOOKS).


def _refusing(name: str, hook: Hook) -> Callable[..., Any]:
    """A write hook that raises :class:`~kvfs.errors.ReadOnlyError`."""

    def refused(self: ReadOnlyDecorator, *args: Any, **kwargs: Any) -> NoReturn:
        self._refuse(hook.method)

    refused.__name__ = refused.__qualname__ = name
    refused.__doc__ = "Raise :class:`~kvfs.errors.ReadOnlyError`."
    return refused


for _name, _hook in HOOKS.items():
    if _hook.writes:
        setattr(ReadOnlyDecorator, _name, _refusing(_name, _hook))


__all__ = [
    "StoreDecorator",
    "KeyTransformingDecorator",
    "PrefixDecorator",
    "URLEncodeKeysDecorator",
    "ReadOnlyDecorator",
]
