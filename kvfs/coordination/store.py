"""The library's side of coordination: :class:`CoordinatedStore` announces its writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

from ..decorator import StoreDecorator
from ..mixins import TTL
from ..store import KeyValueStore, Metadata
from ..url import mask_url
from .base import Coordinator
from .messages import ChangeKind, channel_for


class CoordinatedStore(StoreDecorator):
    """Wraps *store* and publishes each change it makes, once the change succeeded.

    *url* is the coordination engine (``redis://…``, ``postgresql://…``; see
    :func:`~kvfs.coordination.open_coordinator`), or a :class:`~kvfs.coordination.Coordinator`
    to share (then it is not closed with the store). *store_url* names the store as
    every host opens it (the mount's ``STORE`` argument): its channel is
    :func:`~kvfs.coordination.channel_for` of it, so only hosts on the same store hear
    the changes. ``open_store("…?coordinate=URL")`` fills it in.

    Published: ``put``/``put_file`` (write), ``copy`` (write of the destination),
    ``delete``/``delete_many`` (delete), ``move`` (rename), ``move_directory`` (rename
    of a directory), ``put_directory`` (mkdir) and ``delete_directory`` (rmdir), with the
    keys as this store sees them. A failing operation publishes nothing and raises as
    before; a failing publish never fails the operation (see
    :meth:`Coordinator.publish <kvfs.coordination.Coordinator.publish>`). Reads pass
    straight through. :meth:`close` closes the wrapped store and the coordinator it made.
    Raises ``ValueError`` for an unknown coordination URL scheme.
    """

    def __init__(self, store: KeyValueStore, url: str | Coordinator, *, store_url: str) -> None:
        super().__init__(store)
        if isinstance(url, Coordinator):
            self.coordinator, self._owns_coordinator = url, False
        else:
            from . import open_coordinator

            self.coordinator, self._owns_coordinator = open_coordinator(url), True
        #: The channel this store's changes are published on.
        self.channel = channel_for(store_url)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._dstore!r}, {mask_url(self.coordinator.url)!r})"

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # A pickle opens its own coordinator from the engine's URL; a shared one cannot travel.
        if isinstance(arguments.get("url"), Coordinator):
            raise TypeError(
                "a CoordinatedStore built on a Coordinator object cannot be pickled: give it the engine's URL"
            )
        return arguments

    def close(self) -> None:
        """Close the wrapped store, then the coordinator if this store opened it."""
        try:
            super().close()
        finally:
            if self._owns_coordinator:
                self.coordinator.close()

    def _announce(self, kind: ChangeKind, keys: Sequence[str], directory: bool = False) -> None:
        self.coordinator.publish(self.channel, kind, keys, directory=directory)

    # ------------------------------------------------------------------ writes

    def _put(self, key: str, data: bytes, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        stored = super()._put(key, data, ttl_secs, metadata=metadata)
        self._announce(ChangeKind.WRITE, [stored])
        return stored

    def _put_file(self, key: str, file: IO[bytes], ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        stored = super()._put_file(key, file, ttl_secs, metadata=metadata)
        self._announce(ChangeKind.WRITE, [stored])
        return stored

    def _put_filename(self, key: str, filename: str, ttl_secs: TTL = None, metadata: Metadata | None = None) -> str:
        stored = super()._put_filename(key, filename, ttl_secs, metadata=metadata)
        self._announce(ChangeKind.WRITE, [stored])
        return stored

    def _delete(self, key: str) -> None:
        super()._delete(key)
        self._announce(ChangeKind.DELETE, [key])

    def _delete_many(self, keys: list[str]) -> None:
        self._dstore.delete_many(keys)  # the wrapped store's batch (S3: DeleteObjects)
        self._announce(ChangeKind.DELETE, keys)

    def _copy(self, source: str, dest: str) -> str:
        stored = super()._copy(source, dest)
        self._announce(ChangeKind.WRITE, [stored])
        return stored

    def _move(self, source: str, dest: str) -> str:
        stored = super()._move(source, dest)
        self._announce(ChangeKind.RENAME, [source, stored])
        return stored

    def _move_directory(self, source: str, dest: str) -> str:
        moved = self._dstore.move_directory(source, dest)  # the wrapped store's own (a rename)
        self._announce(ChangeKind.RENAME, [source, moved], directory=True)
        return moved

    def _put_directory(self, key: str) -> None:
        super()._put_directory(key)
        self._announce(ChangeKind.MKDIR, [key])

    def _delete_directory(self, key: str) -> None:
        super()._delete_directory(key)
        self._announce(ChangeKind.RMDIR, [key])

    def __getstate__(self) -> Any:
        raise TypeError("a CoordinatedStore holds connections and threads; it cannot be pickled")


__all__ = ["CoordinatedStore"]
