"""The mount's side of coordination: received changes become cache invalidations.

:class:`MountCoordination` subscribes to the store's channel and turns each change
another host made into calls of the mount's callbacks (:class:`CacheCallbacks`): forget
the key's cached entry and read-cache copy, forget the directory's listing, make the
kernel forget the path, and, after the coordinator reconnected (messages may have been
lost), forget everything. It also publishes the mount's own changes. It knows nothing of
the operations class: the mount wires its caches in through the callbacks.

Kernel caches (:class:`KernelInvalidator`)
------------------------------------------
The mount is a high-level libfuse 3 daemon (through mfusepy), whose kernel-side caches
are keyed by libfuse's node ids, not by paths. What can drop them:

* ``fuse_invalidate_path(struct fuse *f, const char *path)`` of the high-level API
  (libfuse 3.2 and later; exported as ``fuse_invalidate_path@@FUSE_3.1`` by this
  machine's libfuse 3.14): it looks the path up in libfuse's node table and calls
  ``fuse_lowlevel_notify_inval_inode(se, ino, 0, 0)``, which makes the kernel drop the
  inode's cached attributes and *all* its cached pages. It returns 0, or ``-ENOENT``
  when the kernel holds no node for the path (nothing to drop: not an error).
* ``fuse_lowlevel_notify_inval_entry(se, parent_ino, name, namelen)`` and
  ``fuse_lowlevel_notify_inval_inode`` of the low-level API need the kernel's node ids,
  which the high-level API keeps to itself (its path-to-node lookup is static in
  ``fuse.c``); only the root's id (1) is known. So a dentry (the name → inode link)
  cannot be dropped from a high-level daemon; it stays until ``entry_timeout``. That is
  harmless for coherence: a stale dentry's inode has had its attributes invalidated, so
  the next ``stat``/``open`` asks the daemon, which answers from the store
  (``ENOENT`` for a deleted or renamed-away name); new names are never cached
  negatively (``negative_timeout`` 0).

mfusepy 3.1 exposes neither function: the ``struct fuse *`` is read from
``fuse_get_context().contents.fuse`` (mfusepy's ``fuse_context`` structure) while
libfuse runs the ``init`` callback, and ``fuse_invalidate_path`` is declared through
ctypes on mfusepy's loaded library (``argtypes`` ``c_void_p, c_char_p``, ``restype``
``c_int``). Tested on libfuse 3.14 with a real mount (``tests/test_mount_coordination.py``):
with ``kernel_cache`` and 60 s attribute timeouts, a same-size change is read only after
the call, and a changed size shows at once after it. The call must come from a thread
that is not serving a FUSE request on the same node (the kernel may wait for that
request's pages): the coordinator's listener thread is such a thread.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..coordination import Change, ChangeKind, Coordinator, CoordinatorStatus, Lease, Subscription, channel_for
from ..keys import SEPARATOR
from .paths import component_name

log = logging.getLogger(__name__)

#: Keys whose last writer a mount remembers (see MountCoordination._writer_changed).
_WRITERS_LIMIT = 10_000
#: How a write-back journal's kind of change is announced.
_JOURNAL_KINDS = {
    "put": ChangeKind.WRITE,
    "copy": ChangeKind.WRITE,
    "delete": ChangeKind.DELETE,
    "move": ChangeKind.RENAME,
    "put_directory": ChangeKind.MKDIR,
    "delete_directory": ChangeKind.RMDIR,
}


def _moved_directory(source: str, key: str) -> tuple[str, str] | None:
    """The directories a move of *source* to *key* implies, by their common trailing names.

    ``d1/sub/f`` to ``d2/sub/f``: ``d1`` to ``d2``; None when the last names differ (a
    file's rename). A file moved to another directory under the same name counts too:
    announcing more than moved only drops more caches.
    """
    source_parts, key_parts = source.split("/"), key.split("/")
    common = 0
    while (
        common < min(len(source_parts), len(key_parts)) - 1
        and source_parts[-1 - common] == key_parts[-1 - common]
    ):
        common += 1
    if common == 0:
        return None
    return "/".join(source_parts[:-common]), "/".join(key_parts[:-common])


class WhenStored(Protocol):
    """Calls back once the store has every pending change of some keys (:meth:`WriteBack.when_stored`)."""

    def __call__(self, keys: Sequence[str], callback: Callable[[], None], *, below: bool = False) -> None: ...


@dataclass(frozen=True)
class CacheCallbacks:
    """What the mount forgets when another host changed something.

    ``forget_entry(key)`` drops the key's cached metadata and read-cache copy;
    ``forget_listing(directory_key)`` drops a directory's cached listing (``""`` is the
    root); ``invalidate_kernel(path)`` makes the kernel forget a path's attributes and
    pages (``/a/b``); ``forget_everything()`` drops every cache the mount keeps;
    ``forget_tree(directory_key)``, where given, drops every entry below a directory
    (else a directory rename or removal calls ``forget_everything``);
    ``learn_file(key, size, mtime)``, where given, takes a written file's new attributes
    from the message, in place of its cached entry (and of a cached copy of it), so that
    showing the change costs no request for them.
    """

    forget_entry: Callable[[str], None]
    forget_listing: Callable[[str], None]
    invalidate_kernel: Callable[[str], None]
    forget_everything: Callable[[], None]
    forget_tree: Callable[[str], None] | None = None
    learn_file: Callable[[str, int, float], None] | None = None


def key_path(key: str) -> str:
    """The mount path that shows *key* (``a%20b/c`` is ``/a b/c``; ``""`` is ``/``)."""
    if not key:
        return "/"
    return "/" + "/".join(component_name(part) for part in key.split(SEPARATOR))


def _parent(key: str) -> str:
    return key.rpartition(SEPARATOR)[0]


class MountCoordination:
    """Keeps one mount's caches coherent with the changes other hosts announce.

    *coordinator* carries the messages (shared: not closed here); *store_url* names the
    store as every host opens it (its channel is :func:`~kvfs.coordination.channel_for`
    of it). Changes published by this same coordinator are the mount's own and ignored.
    :meth:`start` subscribes, :meth:`stop` ends it; :meth:`publish` announces the
    mount's own change after it reached the store. Callback failures are logged, never
    raised into the listener.

    *when_stored* is a write-back mount's
    :meth:`WriteBack.when_stored <kvfs.mount.writeback.WriteBack.when_stored>`: the
    mount's store then takes a change when it is journaled, and its announcement waits
    until the upload (or delete, or move) reached the real store.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        store_url: str,
        callbacks: CacheCallbacks,
        when_stored: WhenStored | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.channel = channel_for(store_url)
        self.callbacks = callbacks
        self._when_stored = when_stored
        # The sender of the last change of each key, heard or made here: a written
        # file's attributes are taken from a message only when its sender also made the
        # key's previous change (two hosts writing one file at once: the store decides).
        self._writers: dict[str, str] = {}
        self._subscription: Subscription | None = None
        self.changes_applied = 0
        self.resets = 0

    def start(self) -> None:
        """Subscribe to the store's channel (returns once the engine confirmed, or gave up waiting)."""
        if self._subscription is None:
            self._subscription = self.coordinator.subscribe(self.channel, self.apply, self.missed)

    def stop(self) -> None:
        """Stop applying changes."""
        if self._subscription is not None:
            self._subscription.cancel()
            self._subscription = None

    def publish(
        self,
        kind: ChangeKind | str,
        keys: Sequence[str],
        *,
        directory: bool = False,
        size: int | None = None,
        mtime: float | None = None,
    ) -> bool:
        """Announce the mount's own change of *keys*, once it reached the store.

        *size* and *mtime*: a written regular file's new attributes, as the mount shows
        them (see :meth:`Coordinator.publish <kvfs.coordination.Coordinator.publish>`).
        Without *when_stored* the change is in the store already: the message goes now,
        and the result is whether it was sent. With it, the message goes once every
        change of *keys* pending now (and with *directory* or ``rmdir``, of the keys
        below them) is stored, from the upload worker that stored the last, without
        attributes (a later write may replace the upload); the result is True
        (announced, or to be announced).
        """
        kind = ChangeKind(kind)
        for key in keys:
            self._writer_changed(key, self.coordinator.sender)
        if self._when_stored is None:
            return self.coordinator.publish(self.channel, kind, keys, directory=directory, size=size, mtime=mtime)
        keys = tuple(keys)

        def announce() -> None:
            self.coordinator.publish(self.channel, kind, keys, directory=directory)

        self._when_stored(keys, announce, below=directory or kind is ChangeKind.RMDIR)
        return True

    def announce_journaled(self, changes: Iterable[Any]) -> None:
        """Announce write-back journal changes (an earlier mount's, replayed), each once stored.

        *changes* are :class:`kvfs.mount.journal.Change` objects; a move is announced
        as a rename of its source to its key. Kinds the journal does not know are skipped.
        The journal keeps a directory's rename as a move per value: the directories the
        moves imply (``d1/f`` to ``d2/f``: ``d1`` to ``d2``) are announced once each, as a
        directory's rename, so other mounts also drop the listings that named them.
        """
        directories: dict[tuple[str, str], None] = {}
        for change in changes:
            kind = _JOURNAL_KINDS.get(change.kind)
            if kind is not None:
                self.publish(kind, change.keys if kind is ChangeKind.RENAME else (change.key,))
            if change.kind == "move" and change.source is not None:
                moved = _moved_directory(change.source, change.key)
                if moved is not None:
                    directories[moved] = None
        for source, target in directories:
            self.publish(ChangeKind.RENAME, (source, target), directory=True)

    def status(self) -> CoordinatorStatus:
        return self.coordinator.status()

    def lock_name(self, key: str) -> str:
        """The lease name of *key*'s lock: every host's mount of the store uses the same."""
        return f"{self.channel}:{key}"

    def acquire_lock(
        self, key: str, owner: str, *, shared: bool = False, timeout: float | None = 0.0, lifetime: float | None = None
    ) -> Lease | None:
        """Take *key*'s lock for *owner* (``flock``; a ``fcntl`` range lock locks the whole file).

        As :meth:`Coordinator.acquire <kvfs.coordination.Coordinator.acquire>`: a kept
        lease, or None when the lock stayed taken for *timeout* seconds;
        :class:`~kvfs.coordination.CoordinationError` when the engine cannot be reached
        (the mount answers ``ENOLCK``).
        """
        options = {} if lifetime is None else {"lifetime": lifetime}
        return self.coordinator.acquire(self.lock_name(key), owner, shared=shared, timeout=timeout, **options)

    # ------------------------------------------------------------------ receiving

    def apply(self, change: Change) -> None:
        """Forget what *change* made stale (ignoring this mount's own changes)."""
        if change.sender == self.coordinator.sender or change.channel != self.channel:
            return
        tree = change.directory or change.kind is ChangeKind.RMDIR
        learn = self.callbacks.learn_file
        same_writer = all([self._writer_changed(key, change.sender) for key in change.keys])
        attributes = change.size is not None and change.mtime is not None and len(change.keys) == 1
        if learn is not None and attributes and same_writer:
            # A written file whose attributes came along: no listing to drop, nothing to ask.
            key = change.keys[0]
            self._call(learn, key, change.size, change.mtime)
            self._call(self.callbacks.invalidate_kernel, key_path(key))
            self._call(self.callbacks.invalidate_kernel, key_path(_parent(key)))
        elif tree and self.callbacks.forget_tree is None:
            self._call(self.callbacks.forget_everything)
            for key in change.keys:
                self._forget_key(key, directory=True)
        else:
            for key in change.keys:
                if tree and self.callbacks.forget_tree is not None:
                    self._call(self.callbacks.forget_tree, key)
                directory = tree or change.kind in (ChangeKind.MKDIR, ChangeKind.RMDIR)
                self._forget_key(key, directory=directory)
        self.changes_applied += 1

    def _writer_changed(self, key: str, sender: str) -> bool:
        """Note *sender* as *key*'s last writer; whether it was the last one before too (or none was known)."""
        if len(self._writers) >= _WRITERS_LIMIT:
            self._writers.clear()
        previous = self._writers.get(key)
        self._writers[key] = sender
        return previous is None or previous == sender

    def missed(self) -> None:
        """The coordinator reconnected: changes may have been lost, so forget everything."""
        self.resets += 1
        log.info("coordination: reconnected; dropping every cache, changes may have been missed")
        self._call(self.callbacks.forget_everything)

    def _forget_key(self, key: str, *, directory: bool) -> None:
        parent = _parent(key)
        self._call(self.callbacks.forget_entry, key)
        if directory:
            self._call(self.callbacks.forget_listing, key)
        self._call(self.callbacks.forget_listing, parent)
        self._call(self.callbacks.invalidate_kernel, key_path(key))
        self._call(self.callbacks.invalidate_kernel, key_path(parent))

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        try:
            function(*args)
        except Exception:
            log.exception("coordination: cache callback %s%r failed", getattr(function, "__name__", function), args)


class KernelInvalidator:
    """Makes the kernel forget a path's cached attributes and pages (``fuse_invalidate_path``).

    Call :meth:`capture` from the operations' ``init`` (libfuse sets the context there),
    :meth:`invalidate` from any thread that is not serving a FUSE request, and
    :meth:`release` from ``destroy`` (afterwards the libfuse handle is gone, and
    :meth:`invalidate` does nothing). See the module's documentation for why this is
    the whole of what a high-level daemon can do.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fuse: ctypes.c_void_p | None = None
        self._function: Any = None
        self.calls = 0

    def capture(self) -> bool:
        """Remember the running mount's libfuse handle; False where libfuse lacks the call."""
        import mfusepy

        library = getattr(mfusepy, "_libfuse", None)
        function = getattr(library, "fuse_invalidate_path", None)
        if function is None or getattr(mfusepy, "fuse_version_major", 3) < 3:
            log.warning("libfuse has no fuse_invalidate_path: kernel caches expire by their timeouts only")
            return False
        function.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        function.restype = ctypes.c_int
        context = library.fuse_get_context()
        if not context or not context.contents.fuse:
            return False
        with self._lock:
            self._fuse = ctypes.c_void_p(context.contents.fuse)
            self._function = function
        return True

    @property
    def active(self) -> bool:
        return self._fuse is not None

    def invalidate(self, path: str) -> int:
        """Drop *path*'s kernel caches: 0, ``-ENOENT`` (the kernel knows no such node), or -errno."""
        encoded = path.encode("utf-8", "surrogateescape")
        with self._lock:
            if self._fuse is None:
                return 0
            self.calls += 1
            return int(self._function(self._fuse, encoded))

    def release(self) -> None:
        """Forget the handle (the mount is being destroyed)."""
        with self._lock:
            self._fuse = None


__all__ = ["CacheCallbacks", "KernelInvalidator", "MountCoordination", "key_path"]
