"""simplekv's mixins: URLs for keys, server-side copy, and time-to-live."""

from __future__ import annotations

import io
import os
from typing import IO, ClassVar, Union

from .store import FileOrFilename, KeyValueStore, Metadata

#: ``ttl_secs`` value: the key never expires.
FOREVER = "forever"
#: ``ttl_secs`` value: use the store's ``default_ttl_secs`` (or the backend's default).
NOT_SET = "not_set"

TTL = Union[int, float, str, None]


class UrlMixin:
    """Stores that can give a URL for a key."""

    def url_for(self, key: str) -> str:
        """Return a URL from which the value of *key* can be fetched.

        The key is validated (``ValueError``); whether it exists is not checked.
        """
        self._check_valid_key(key)  # type: ignore[attr-defined]
        return self._url_for(key)

    def _url_for(self, key: str) -> str:
        raise NotImplementedError


class UrlKeyValueStore(UrlMixin, KeyValueStore):
    """A :class:`KeyValueStore` with :class:`UrlMixin` (kept for simplekv compatibility)."""


class CopyMixin:
    """Marks a backend whose ``_copy`` runs on the server.

    Every :class:`KeyValueStore` has :meth:`~KeyValueStore.copy` and
    :meth:`~KeyValueStore.move`; a backend that mixes this in overrides ``_copy`` with a
    server-side copy and declares it through ``supports_server_copy``.
    """

    supports_server_copy: ClassVar[bool] = True


def _ignored(metadata: object) -> None:
    """Check a ``metadata=`` argument a store keeps no metadata for (it is then ignored)."""
    if metadata is not None and not isinstance(metadata, Metadata):
        raise TypeError(f"metadata must be a kvfs.Metadata, not {type(metadata).__name__}")


class TimeToLiveMixin:
    """Stores whose keys can expire: ``put(key, data, ttl_secs=...)``.

    ``ttl_secs`` is a number of seconds (``int`` or ``float``, not negative),
    :data:`FOREVER`, :data:`NOT_SET`, or ``None`` for the store's ``default_ttl_secs``.
    Anything else raises ``ValueError``. Backends receive the checked value in their
    ``_put``/``_put_file``/``_put_filename`` hooks as a third argument.
    """

    ttl_support: ClassVar[bool] = True
    default_ttl_secs: TTL = NOT_SET

    def _valid_ttl(self, ttl_secs: TTL) -> TTL:
        if ttl_secs is None:
            ttl_secs = self.default_ttl_secs
        if ttl_secs in (FOREVER, NOT_SET):
            return ttl_secs
        if isinstance(ttl_secs, bool) or not isinstance(ttl_secs, (int, float)):
            raise ValueError(f"not a valid ttl_secs value: {ttl_secs!r}")
        if ttl_secs < 0:
            raise ValueError(f"ttl_secs must not be negative: {ttl_secs!r}")
        return ttl_secs

    # Stores whose keys expire keep no POSIX metadata: a metadata= given is ignored.
    def put(self, key: str, data: bytes, ttl_secs: TTL = None, *, metadata: Metadata | None = None) -> str:
        """Store *data* under *key*, expiring after *ttl_secs* seconds; returns the key."""
        self._check_valid_key(key)  # type: ignore[attr-defined]
        _ignored(metadata)
        value = self._check_valid_value(data)  # type: ignore[attr-defined]
        return self._put(key, value, self._valid_ttl(ttl_secs))  # type: ignore[attr-defined]

    def put_file(
        self, key: str, file: FileOrFilename, ttl_secs: TTL = None, *, metadata: Metadata | None = None
    ) -> str:
        """Store the contents of *file* under *key*, expiring after *ttl_secs* seconds."""
        self._check_valid_key(key)  # type: ignore[attr-defined]
        _ignored(metadata)
        ttl = self._valid_ttl(ttl_secs)
        if isinstance(file, (str, os.PathLike)):
            return self._put_filename(key, os.fspath(file), ttl)  # type: ignore[attr-defined]
        return self._put_file(key, file, ttl)  # type: ignore[attr-defined]

    def _put(self, key: str, data: bytes, ttl_secs: TTL = NOT_SET) -> str:
        # The default of KeyValueStore._put, with the ttl passed on to _put_file.
        return self._put_file(key, io.BytesIO(data), ttl_secs)

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = NOT_SET) -> str:
        with open(filename, "rb") as file:
            return self._put_file(key, file, ttl_secs)  # type: ignore[attr-defined,call-arg]

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = NOT_SET) -> str:
        raise NotImplementedError


__all__ = ["UrlMixin", "UrlKeyValueStore", "CopyMixin", "TimeToLiveMixin", "FOREVER", "NOT_SET"]
