"""What the mount knows about names without asking the store: attribute and listing caches.

Entries expire after a lifetime (``attr_timeout`` for single names, ``listing_timeout``
for directory listings), so changes made by the library or by another mount show up;
the mount's own changes update the caches at once. A lifetime of ``0`` turns a cache
off. On a store that keeps POSIX metadata (``keeps_metadata``) entries carry the stored
mode and owner, and chmod, chown and utimens are written through to the store; elsewhere
they live in :class:`AttributeOverrides`, in memory for the life of the mount (which
also holds, on such a store, what waits for a new file's first upload).
"""

from __future__ import annotations

import stat
import threading
import time
from dataclasses import dataclass, field

from .paths import parent_key

#: More cached single names than this and expired ones are swept out.
_SWEEP_LIMIT = 200_000


@dataclass(frozen=True)
class Entry:
    """A name in the mount: a directory, or a file with the store's size and mtime (or a link, ...)."""

    is_dir: bool
    size: int = 0
    #: Last-modified time in seconds as the store reports it, None where unknown.
    mtime: float | None = None
    #: Permission bits, owner and group the store keeps (``keeps_metadata``), None where unknown.
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    #: The file type (``stat.S_IFLNK``, ``S_IFIFO``, ...) of a name that is not a regular
    #: file or a directory, None for those. A link's size is its target's length.
    kind: int | None = None
    #: The device of a character or block special file.
    rdev: int = 0

    @property
    def is_link(self) -> bool:
        return self.kind == stat.S_IFLNK

    @property
    def is_special(self) -> bool:
        """A FIFO, socket or device: kept by the mount in memory, never by the store."""
        return self.kind is not None and self.kind != stat.S_IFLNK


DIRECTORY = Entry(True)


class MetadataCache:
    """Cached entries by key, and cached directory listings by directory key (``""`` is the root).

    A listing maps each key component directly below the directory to its entry, and
    is authoritative while fresh: a name not in it does not exist. Thread-safe.
    """

    def __init__(self, attr_timeout: float, listing_timeout: float) -> None:
        self.attr_timeout = attr_timeout
        self.listing_timeout = listing_timeout
        self._entries: dict[str, tuple[float, Entry | None]] = {}
        self._listings: dict[str, tuple[float, dict[str, Entry]]] = {}
        self._lock = threading.Lock()
        # Bumped by every change, so a listing fetched while the mount changed the
        # directory is not cached over the change: the generation of each directory's
        # last change, and of the last change that may touch any directory.
        self._generation = 0
        self._changed: dict[str, int] = {}
        self._changed_anywhere = 0
        # Directories whose last listing was over a size limit (see listing_size).
        self._big: dict[str, int] = {}

    @property
    def generation(self) -> int:
        return self._generation

    # ------------------------------------------------------------------ reading

    def lookup(self, key: str) -> tuple[bool, Entry | None]:
        """Return ``(known, entry)``: entry None with known True means "does not exist"."""
        now = time.monotonic()
        cached = self._entries.get(key)
        if cached is not None and cached[0] > now:
            return True, cached[1]
        listing = self._listings.get(parent_key(key))
        if listing is not None and listing[0] > now:
            component = key[key.rfind("/") + 1 :]
            return True, listing[1].get(component)
        return False, None

    def listing_size(self, directory: str) -> int | None:
        """How many entries *directory* had when last listed (even if that expired), or None."""
        cached = self._listings.get(directory)
        if cached is not None:
            return len(cached[1])
        return self._big.get(directory)

    def note_big(self, directory: str, size: int) -> None:
        """Remember that *directory* has at least *size* entries (a listing was cut short)."""
        with self._lock:
            if len(self._big) > _SWEEP_LIMIT // 100:
                self._big.clear()
            self._big[directory] = size

    def listing(self, directory: str) -> dict[str, Entry] | None:
        """The fresh cached listing of *directory*, or None."""
        cached = self._listings.get(directory)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    # ------------------------------------------------------------------ filling

    def remember(self, key: str, entry: Entry | None) -> None:
        """Cache what the store said about *key* (None: it does not exist)."""
        if self.attr_timeout <= 0:
            return
        with self._lock:
            if len(self._entries) > _SWEEP_LIMIT:
                self._sweep()
            self._entries[key] = (time.monotonic() + self.attr_timeout, entry)

    def remember_listing(self, directory: str, entries: dict[str, Entry], generation: int) -> None:
        """Cache a listing fetched when :attr:`generation` was *generation*."""
        if self.listing_timeout <= 0:
            return
        with self._lock:
            if self._changed_anywhere > generation or self._changed.get(directory, -1) > generation:
                return  # the mount changed the directory meanwhile: the listing may miss it
            self._big.pop(directory, None)
            if len(self._listings) > _SWEEP_LIMIT // 100:
                self._sweep()
            self._listings[directory] = (time.monotonic() + self.listing_timeout, entries)

    def _sweep(self) -> None:
        now = time.monotonic()
        self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
        self._listings = {k: v for k, v in self._listings.items() if v[0] > now}

    # ------------------------------------------------------------------ the mount's changes

    def set(self, key: str, entry: Entry | None, *, empty_directory: bool = False) -> None:
        """Record a change the mount made: *key* now is *entry* (None: it was removed).

        With *empty_directory*, *key* is a new directory known to be empty.
        """
        now = time.monotonic()
        with self._lock:
            self._generation += 1
            if len(self._changed) > _SWEEP_LIMIT:
                self._changed.clear()
                self._changed_anywhere = self._generation
            self._changed[parent_key(key)] = self._changed[key] = self._generation
            if self.attr_timeout > 0:
                self._entries[key] = (now + self.attr_timeout, entry)
            else:
                self._entries.pop(key, None)
            listing = self._listings.get(parent_key(key))
            if listing is not None:
                component = key[key.rfind("/") + 1 :]
                if entry is None:
                    listing[1].pop(component, None)
                else:
                    listing[1][component] = entry
            if entry is None or not entry.is_dir:
                self._listings.pop(key, None)
            elif empty_directory and self.listing_timeout > 0:
                self._listings[key] = (now + self.listing_timeout, {})

    # ------------------------------------------------------------------ others' changes

    def drop(self, key: str) -> None:
        """Drop *key*'s cached entry (another host changed it); the next lookup asks the store."""
        with self._lock:
            self._generation += 1
            self._changed[parent_key(key)] = self._changed[key] = self._generation
            self._entries.pop(key, None)

    def drop_listing(self, directory: str) -> None:
        """Drop *directory*'s cached listing (another host changed a name in it)."""
        with self._lock:
            self._generation += 1
            self._changed[directory] = self._generation
            self._listings.pop(directory, None)

    def clear(self) -> None:
        """Drop every cached entry and listing (changes by others may have been missed)."""
        with self._lock:
            self._generation += 1
            self._changed_anywhere = self._generation
            self._entries.clear()
            self._listings.clear()

    def forget_tree(self, key: str) -> None:
        """Drop everything cached at or below *key* (a directory that moved or vanished)."""
        below = key + "/"
        with self._lock:
            self._generation += 1
            self._changed_anywhere = self._generation
            self._entries = {k: v for k, v in self._entries.items() if k != key and not k.startswith(below)}
            self._listings = {k: v for k, v in self._listings.items() if k != key and not k.startswith(below)}


@dataclass
class Shown:
    """The version (size, mtime) of a value the mount showed, and why it is remembered.

    One record for every use: the namespace keeps one per key, and a handle the version
    it was opened on (to give the read cache a copy of what it reads).

    *seen*: when a program opened this version (None: not since the mount changed it).
    Unchanged at the next open, the kernel may keep its cached pages of the file.

    *started*, *finished*: the mount stored this version itself then (None: it did not).
    The store's own time for the value (a little later or, on S3 and GCS, in whole
    seconds) is shown as *mtime* while the size matches and the store's time falls
    within the write, with a little slack: a changed mtime would make the kernel drop
    the cached pages of a file just written, and asking the store for its time after
    each write would cost a request per file.
    """

    size: int
    mtime: float
    seen: float | None = None
    started: float | None = None
    finished: float | None = None

    def written_as(self, size: int | None, mtime: float) -> bool:
        """Whether the store's (*size*, *mtime*) is the version the mount wrote."""
        return (
            self.started is not None
            and self.finished is not None
            and size == self.size
            and self.started - 2 <= mtime <= self.finished + 2
        )


@dataclass
class Overrides:
    """Attributes set through the mount; None fields fall back to the defaults."""

    mode: int | None = None
    uid: int | None = None
    gid: int | None = None
    atime_ns: int | None = None
    mtime_ns: int | None = None
    #: The last change of the name's attributes or content through the mount.
    ctime_ns: int | None = None


@dataclass
class AttributeOverrides:
    """chmod/chown/utimens results by key, kept in memory for the life of the mount."""

    _by_key: dict[str, Overrides] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: str) -> Overrides | None:
        return self._by_key.get(key)

    def update(self, key: str, **values: int | None) -> None:
        """Set the given fields of *key*'s overrides (a value of None clears a field)."""
        with self._lock:
            overrides = self._by_key.setdefault(key, Overrides())
            for name, value in values.items():
                setattr(overrides, name, value)

    def drop(self, key: str) -> None:
        with self._lock:
            self._by_key.pop(key, None)

    def move(self, source: str, dest: str, *, tree: bool = False) -> None:
        """Carry *source*'s overrides over to *dest* (and, with *tree*, everything below)."""
        with self._lock:
            self._by_key.pop(dest, None)
            moved = self._by_key.pop(source, None)
            if moved is not None:
                self._by_key[dest] = moved
            if tree:
                below = source + "/"
                for key in [k for k in self._by_key if k.startswith(below)]:
                    self._by_key[dest + key[len(source) :]] = self._by_key.pop(key)


__all__ = ["Entry", "DIRECTORY", "MetadataCache", "Overrides", "AttributeOverrides", "Shown"]
