"""Decorators that make up keys: ``put(None, data)`` stores *data* and returns the new key.

In cases where you want keys generated for you, wrap the store, and pass ``None`` as the
key. These decorators belong outermost in a stack, since they change what ``put`` and
``put_file`` accept::

    >>> from kvfs.memory import DictStore
    >>> from kvfs.idgen import HashDecorator
    >>> store = HashDecorator(DictStore())
    >>> store.put(None, b"my_data")
    'ab0c15b6029fdffce16b393f2d27ca839a76249e'

As in simplekv, an empty key (``""``) is treated like ``None``. A generated key goes
through the *template* (``"{}"`` by default; ``"blobs/{}.bin"`` puts them below a
prefix) and must then be a valid key, or :class:`~kvfs.errors.InvalidKeyError` is raised.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from collections.abc import Callable
from typing import IO, Any

from .decorator import StoreDecorator
from .errors import InvalidKeyError
from .mixins import TTL
from .store import CHUNK_SIZE, FileOrFilename, KeyValueStore, Metadata


class HashDecorator(StoreDecorator):
    """Names values by their hash: ``put(None, data)`` stores under ``hashfunc(data).hexdigest()``.

    *hashfunc* is a :mod:`hashlib` constructor (default ``hashlib.sha1``, as in simplekv);
    the hex digest is formatted into *template*. A given key is used unchanged (the template
    applies to generated keys only, as in simplekv). ``put_file`` hashes a file name's
    contents in chunks and then stores the file; a file object is copied in chunks to a
    temporary file while it is hashed (in memory up to 1 MiB), so a large value is never
    held in memory. The temporary file is removed afterwards, whatever happens.

    A value that is not bytes raises :class:`~kvfs.errors.InvalidValueError` before it is
    hashed; a file that cannot be read raises ``OSError`` and nothing is stored.
    """

    def __init__(
        self,
        decorated_store: KeyValueStore,
        hashfunc: Callable[..., Any] = hashlib.sha1,
        template: str = "{}",
    ) -> None:
        super().__init__(decorated_store)
        self.hashfunc = hashfunc
        self._template = template

    def put(self, key: str | None, data: bytes, ttl_secs: TTL = None, *, metadata: Metadata | None = None) -> str:
        """Store *data* under *key*, or under its hash when *key* is ``None``; return the key."""
        if not key:
            value = self._check_valid_value(data)
            key = self._template.format(self.hashfunc(value).hexdigest())
        return super().put(key, data, ttl_secs, metadata=metadata)

    def put_file(
        self, key: str | None, file: FileOrFilename, ttl_secs: TTL = None, *, metadata: Metadata | None = None
    ) -> str:
        """Store *file* under *key*, or under the hash of its contents when *key* is ``None``."""
        if key:
            return super().put_file(key, file, ttl_secs, metadata=metadata)
        if isinstance(file, (str, os.PathLike)):
            with open(file, "rb") as source:
                digest = self._hash_stream(source, None)
            return super().put_file(self._template.format(digest), file, ttl_secs, metadata=metadata)
        # Small values stay in memory, large ones go to disk.
        with tempfile.SpooledTemporaryFile(max_size=CHUNK_SIZE) as spool:
            digest = self._hash_stream(file, spool)  # type: ignore[arg-type]
            spool.seek(0)
            return super().put_file(self._template.format(digest), spool, ttl_secs, metadata=metadata)

    def _hash_stream(self, source: IO[bytes], copy_to: IO[bytes] | None) -> str:
        """Hash *source* to its end in chunks, copying it to *copy_to* when given."""
        digest = self.hashfunc()
        while chunk := source.read(CHUNK_SIZE):
            digest.update(chunk)
            if copy_to is not None:
                copy_to.write(chunk)
        return str(digest.hexdigest())


class UUIDDecorator(StoreDecorator):
    """Names values by a new UUID: ``put(None, data)`` stores under ``str(uuid.uuid1())``.

    Every key, given or generated, is formatted into *template* before it is stored, as in
    simplekv (so ``UUIDDecorator(store, "img/{}.png").put("a", ...)`` stores ``img/a.png``).
    The class attribute :attr:`uuidfunc` names the :mod:`uuid` function used; simplekv's
    default ``"uuid1"`` (time and host based) is kept, set it to ``"uuid4"`` for random
    keys that say nothing about the machine.
    """

    #: Name of the :mod:`uuid` function that makes keys (looked up at each call).
    uuidfunc: str = "uuid1"

    def __init__(self, store: KeyValueStore, template: str = "{}") -> None:
        super().__init__(store)
        self._template = template

    def _key(self, key: str | None) -> str:
        if not key:
            key = str(getattr(uuid, self.uuidfunc)())
        elif not isinstance(key, str):
            # The template would turn 42 or b"k" into a key; refuse them as every store does.
            raise InvalidKeyError(f"a key must be a str or None, not {type(key).__name__}")
        return self._template.format(key)

    def put(self, key: str | None, data: bytes, ttl_secs: TTL = None, *, metadata: Metadata | None = None) -> str:
        """Store *data* under the templated *key* (a new UUID when ``None``); return the key."""
        return super().put(self._key(key), data, ttl_secs, metadata=metadata)

    def put_file(
        self, key: str | None, file: FileOrFilename, ttl_secs: TTL = None, *, metadata: Metadata | None = None
    ) -> str:
        """Store *file* under the templated *key* (a new UUID when ``None``); return the key."""
        return super().put_file(self._key(key), file, ttl_secs, metadata=metadata)


__all__ = ["HashDecorator", "UUIDDecorator"]
