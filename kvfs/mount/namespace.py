"""The mount's names: keys of paths, entries, listings, attributes and the versions shown.

Everything the mount knows per name lives here, so that a removal (:meth:`Namespace.forget`)
and a rename (:meth:`Namespace.move`, :meth:`Namespace.move_tree`) update all of it at
once: cached entries and listings (:class:`~kvfs.mount.metadata.MetadataCache`),
attributes set in memory (:class:`~kvfs.mount.metadata.AttributeOverrides`), directories
only this mount knows, the version of each value the mount showed (:class:`Shown`), names
created but not stored yet, and the read cache's copies. Where the store keeps POSIX
metadata (``keeps_metadata``), chmod, chown and utimens are written through to it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from dataclasses import replace
from typing import Any, overload

from ..store import LINK_SUFFIX, KeyInfo, KeyValueStore
from .binding import mfusepy
from .handles import OpenFile, StagedData
from .metadata import DIRECTORY, AttributeOverrides, Entry, MetadataCache, Overrides, Shown
from .openfiles import OpenFiles
from .options import MountOptions
from .readcache import MEMORY_VALUE_LIMIT, ReadCache
from .paths import PathError, check_path_key, is_raw_name, join_key, name_component, parent_key, path_components

log = logging.getLogger("kvfs.mount")

FuseOSError = mfusepy.FuseOSError

#: Paths whose keys are remembered (every request names a path; the mapping is fixed).
_KEY_CACHE_SIZE = 100_000
#: On a remote store a name not in the caches is looked up by listing its directory
#: (one request that answers every name in it) when the directory has at most this
#: many entries: one page of an S3 or GCS listing.
_LOOKUP_LISTING_LIMIT = 1000
#: The longest file name (NAME_MAX), in bytes, whatever the store: what programs expect.
NAME_MAX = 255
#: The mount remembers the versions it showed for this many values (see Shown).
_SHOWN_LIMIT = 100_000


def directory_entry(info: KeyInfo) -> Entry:
    """The entry of a directory the store describes (with its mode and owner where kept)."""
    if info.mode is None and info.uid is None and info.gid is None:
        return DIRECTORY
    return Entry(True, 0, info.last_modified, info.mode, info.uid, info.gid)


def _link_entry(info: KeyInfo) -> Entry:
    """The entry of a symbolic link kept as the value *info* (its target)."""
    return Entry(False, info.size or 0, info.last_modified, None, info.uid, info.gid, stat.S_IFLNK)


def _show_links(entries: dict[str, Entry]) -> None:
    """Show each ``NAME.rclonelink`` value in *entries* as the link ``NAME``.

    Where ``NAME`` is a value or a directory too, that wins and the link's value shows
    as what it is, a file ``NAME.rclonelink`` (as ``kvfs ls`` shows it).
    """
    for component in [c for c in entries if c.endswith(LINK_SUFFIX) and len(c) > len(LINK_SUFFIX)]:
        entry = entries[component]
        name = component[: -len(LINK_SUFFIX)]
        if entry.is_dir or name in entries:
            continue
        del entries[component]
        entries[name] = replace(entry, mode=None, kind=stat.S_IFLNK)


def seconds(nanoseconds: int) -> float:
    """*nanoseconds* in seconds, as near as a float gets (``ns / 1e9`` rounds the ns first)."""
    return nanoseconds // 1_000_000_000 + nanoseconds % 1_000_000_000 / 1e9


def _store_fields(changes: dict[str, int | None]) -> dict[str, float]:
    """chmod/chown/utimens changes (:class:`Overrides` fields) as ``set_metadata`` arguments."""
    names = {"mode": "mode", "uid": "uid", "gid": "gid", "mtime_ns": "mtime", "atime_ns": "atime"}
    return {
        names[name]: seconds(value) if name.endswith("_ns") else value
        for name, value in changes.items()
        if value is not None
    }


class Namespace:
    """Names of the mount of *store*, with the open *files* that are not stored yet."""

    def __init__(self, store: KeyValueStore, options: MountOptions, files: OpenFiles, keeps_metadata: bool) -> None:
        self.store = store
        self.files = files
        self.uid = os.getuid() if options.uid is None else options.uid
        self.gid = os.getgid() if options.gid is None else options.gid
        self.file_mode = 0o666 & ~options.umask
        self.directory_mode = 0o777 & ~options.umask
        self.mount_time_ns = time.time_ns()
        # The store keeps modes, owners and times: shown from it and changed in it.
        self.keeps_metadata = keeps_metadata
        self.meta = MetadataCache(options.attr_timeout, options.listing_timeout)
        self.overrides = AttributeOverrides()
        # Local copies of values, where fetching one again is a download.
        self.read_cache = ReadCache(options.read_cache_size if store.is_remote else 0, options.cache_dir)
        self._keys: dict[str, str] = {}  # path -> key, see key()
        self._lock = threading.Lock()  # guards _extra_dirs, _shown, _unstored
        # Directories known only to this mount: every one on stores without directory
        # markers, and on others the parents of deleted files (kept like on a disk).
        self._extra_dirs: set[str] = set()
        self._shown: dict[str, Shown] = {}
        # Files created here whose upload failed: the kernel may still hold their names for
        # entry_timeout, and then sends an open(O_CREAT) of one as a plain open.
        self._unstored: set[str] = set()
        # FIFOs, sockets and devices made through the mount: kept here for its life, never stored.
        self._specials: dict[str, Entry] = {}
        # Negative lookups from one listing of the directory only where each request is a round trip.
        self._lists_for_lookups = bool(store.is_remote and store.fast_level_listing)

    # ================================================================== keys

    def key(self, path: str) -> str:
        """The key of *path*, checked against the store's limits."""
        key = self._keys.get(path)
        if key is not None:
            return key
        key = ""
        raw = False
        for name in path_components(path):
            if len(name) * 4 > NAME_MAX and len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise PathError(errno.ENAMETOOLONG, f"a name longer than {NAME_MAX} bytes: {name[:40]}...")
            component = name_component(name)
            if is_raw_name(name):
                raw = True
                component = self._raw_component(key, name, component)
            key = join_key(key, component)
        if key:
            check_path_key(key, self.store.max_key_length, self.store.max_component_length)
        if not raw:  # a raw name's key depends on what the store holds: not kept
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[path] = key
        return key

    def _raw_component(self, directory: str, name: str, component: str) -> str:
        # A key written by other means whose name does not decode to itself is shown
        # as it is: find it under that name unless the encoded name exists too.
        listing = self.listing(directory)
        if component not in listing and name in listing:
            return name
        return component

    # ================================================================== entries

    def entry(self, key: str) -> Entry | None:
        """What *key* is (None: nothing), from open files, caches, or the store."""
        if not key:
            return DIRECTORY
        special = self._specials.get(key)
        if special is not None:
            return special
        known, entry = self.meta.lookup(key)
        file = self.files.get(key)
        if file is not None:
            if entry is None or entry.is_dir:
                return Entry(False, file.size)
            return Entry(False, file.size, entry.mtime, entry.mode, entry.uid, entry.gid)
        if known and entry is not None and (entry.is_dir or entry.size is not None):
            return entry
        if key in self._extra_dirs:
            return DIRECTORY
        if known and entry is None:
            return None
        if self._lists_for_lookups:
            listing = self._small_listing(parent_key(key))
            if listing is not None:
                return listing.get(key[key.rfind("/") + 1 :])
        entry = self.query(key)
        self.meta.remember(key, entry)
        return entry

    def existing(self, key: str) -> Entry:
        """The entry of *key*; ``ENOENT`` if there is none."""
        entry = self.entry(key)
        if entry is None:
            raise FuseOSError(errno.ENOENT)
        return entry

    def is_extra_directory(self, key: str) -> bool:
        return key in self._extra_dirs

    def _small_listing(self, directory: str) -> dict[str, Entry] | None:
        """The listing of *directory* if it has at most _LOOKUP_LISTING_LIMIT entries, else None."""
        size = self.meta.listing_size(directory)
        if size is not None and size > _LOOKUP_LISTING_LIMIT:
            return None
        return self.listing(directory, limit=_LOOKUP_LISTING_LIMIT)

    def query(self, key: str) -> Entry | None:
        """What the store holds under *key* (one request, not cached)."""
        # A key and keys below it may both exist: the directory wins (docs/mount.rst).
        info = self.store.describe(key)
        if info is None:
            return self._query_link(key)
        if info.is_prefix:
            return directory_entry(info)
        return self._file_entry(key, info.size or 0, info.last_modified, info)

    def _query_link(self, key: str) -> Entry | None:
        """The symbolic link *key* (the value ``key + LINK_SUFFIX``), or None."""
        try:
            check_path_key(key + LINK_SUFFIX, self.store.max_key_length, self.store.max_component_length)
        except PathError:
            return None  # too long to be a link's key
        info = self.store.describe(key + LINK_SUFFIX)
        if info is None or info.is_prefix:
            return None
        return _link_entry(info)

    def _file_entry(self, key: str, size: int, mtime: float | None, info: KeyInfo | None = None) -> Entry:
        """The entry of a file as the store describes it, with the time the mount showed for its own write."""
        if self._shown and mtime is not None:
            shown = self._shown.get(key)
            if shown is not None and shown.finished is not None:
                if shown.written_as(size, mtime):
                    mtime = shown.mtime
                elif mtime > shown.finished:
                    self._forget_write(key)  # changed by others since (not a listing from before)
        if info is None:
            return Entry(False, size, mtime)
        return Entry(False, size, mtime, info.mode, info.uid, info.gid)

    @overload
    def listing(self, directory: str) -> dict[str, Entry]: ...
    @overload
    def listing(self, directory: str, limit: int) -> dict[str, Entry] | None: ...

    def listing(self, directory: str, limit: int | None = None) -> dict[str, Entry] | None:
        """The store's entries directly below *directory*, by key component (cached).

        With *limit*, a directory found to have more entries than that gives None.
        """
        cached = self.meta.listing(directory)
        if cached is not None:
            return cached
        generation = self.meta.generation
        prefix = directory + "/" if directory else ""
        entries: dict[str, Entry] = {}
        for info in self.store.iter_level(prefix):
            component = info.key[len(prefix) :]
            if info.is_prefix:
                entries[component[:-1]] = directory_entry(info)
            elif component not in entries:
                entries[component] = self._file_entry(info.key, info.size or 0, info.last_modified, info)
            if limit is not None and len(entries) > limit:
                self.meta.note_big(directory, len(entries))
                return None
        _show_links(entries)
        self.meta.remember_listing(directory, entries, generation)
        return entries

    def children(self, directory: str) -> dict[str, Entry]:
        """The listing of *directory* with this mount's unsaved files and kept directories."""
        entries = dict(self.listing(directory))
        files = self.files.below(directory)
        with self._lock:
            extra = [key for key in self._extra_dirs if key and parent_key(key) == directory]
        for key, size in files:
            component = key[key.rfind("/") + 1 :]
            if component not in entries or not entries[component].is_dir:
                entries[component] = Entry(False, size, None)
        for key in extra:
            component = key[key.rfind("/") + 1 :]
            if component not in entries or not entries[component].is_dir:
                entries[component] = DIRECTORY
        if self._specials:
            with self._lock:
                specials = [(key, entry) for key, entry in self._specials.items() if parent_key(key) == directory]
            for key, entry in specials:
                entries[key[key.rfind("/") + 1 :]] = entry
        return entries

    # ================================================================== attributes

    def attributes(self, key: str | None, entry: Entry, file: OpenFile | None = None) -> dict[str, Any]:
        """``stat`` fields of *key* (None: a file without a name) that is *entry*."""
        if self.keeps_metadata and entry.mode is None and key is not None and entry.kind is None:
            entry = self._with_metadata(key, entry) if key else self._root_entry()
        overrides = self.overrides.get(key) if key is not None else None
        if entry.is_dir:
            mode, size, nlink = stat.S_IFDIR | self.directory_mode, 4096, 2
        elif entry.is_link:
            mode, size, nlink = stat.S_IFLNK | 0o777, entry.size or 0, 1
        elif entry.kind is not None:
            mode, size, nlink = entry.kind | self.file_mode, 0, 1
        else:
            mode, size, nlink = stat.S_IFREG | self.file_mode, entry.size or 0, 1
        if entry.mode is not None:
            mode = stat.S_IFMT(mode) | entry.mode
        if file is not None:
            size = file.size
        mtime = None
        if file is not None and file.mtime_ns is not None:
            mtime = file.mtime_ns
        uid = self.uid if entry.uid is None else entry.uid
        gid = self.gid if entry.gid is None else entry.gid
        atime = ctime = None
        if overrides is not None:
            if overrides.mode is not None and not entry.is_link:  # a link's mode is always 0777
                mode = stat.S_IFMT(mode) | overrides.mode
            uid = uid if overrides.uid is None else overrides.uid
            gid = gid if overrides.gid is None else overrides.gid
            if overrides.mtime_ns is not None:
                mtime = overrides.mtime_ns
            atime = overrides.atime_ns
            ctime = overrides.ctime_ns
        if mtime is None:
            mtime = self.mount_time_ns if entry.mtime is None else int(entry.mtime * 1e9)
        return {
            "st_mode": mode,
            "st_nlink": nlink,
            "st_size": size,
            "st_uid": uid,
            "st_gid": gid,
            "st_mtime": mtime,
            "st_ctime": mtime if ctime is None else max(mtime, ctime),
            "st_atime": mtime if atime is None else atime,
            "st_rdev": entry.rdev,
            "st_blocks": (size + 511) // 512,
            "st_blksize": 128 * 1024,
        }

    def _root_entry(self) -> Entry:
        """The top directory, with the mode and owner of the store's root where it keeps them.

        A private root (``0700``) then keeps the files in it private, as on the disk.
        """
        info = self.store.describe_root()
        return DIRECTORY if info is None else directory_entry(info)

    def _with_metadata(self, key: str, entry: Entry) -> Entry:
        """*entry* with the mode and owner the store keeps for *key*, from the cache or the store.

        An entry the mount made itself (a new or written file) has none: the store is
        asked, since a permissive default shown for a private file would let the kernel
        grant what the file's mode refuses. A name not stored yet keeps its defaults.
        """
        known, cached = self.meta.lookup(key)
        if cached is None or cached.mode is None or cached.is_dir != entry.is_dir:
            info = self.store.describe(key)
            if info is None or info.is_prefix != entry.is_dir:
                return entry
            cached = directory_entry(info) if info.is_prefix else Entry(False, 0, None, info.mode, info.uid, info.gid)
        return replace(entry, mode=cached.mode, uid=cached.uid, gid=cached.gid)

    def change_metadata(self, key: str, entry: Entry, **changes: int) -> None:
        """Apply what chmod, chown or utimens set (:class:`Overrides` fields) to *key*.

        A store that keeps metadata gets it at once, unless *key* is an open file whose
        content waits for its upload (new, or changed): then it waits too, in the
        overrides, and :meth:`stored` writes it after the upload, which would otherwise
        give the value a new time. Elsewhere it lives in the overrides, in memory.
        """
        file = self.files.get(key)
        waiting = file is not None and (file.dirty or not file.exists)
        self.changed(key)
        if not self.keeps_metadata or waiting or not key or entry.kind is not None:
            # In memory: the top directory, links (whose value is not the link) and specials.
            self.overrides.update(key, **changes)
            return
        try:
            self.store.set_metadata(key, **_store_fields(changes))  # type: ignore[arg-type]
        except KeyError:
            # Not in the store (a directory only this mount keeps): in memory.
            self.overrides.update(key, **changes)
            return
        except OSError as error:
            if error.errno in (errno.EPERM, errno.EACCES):
                raise FuseOSError(error.errno) from None  # say, a new owner where the mount is not root
            raise
        # The store shows the change from now on; the atime only the mount remembers.
        superseded = {name: None for name in changes if name != "atime_ns"}
        if self.overrides.get(key) is not None and superseded:
            self.overrides.update(key, **superseded)
        if "atime_ns" in changes:
            self.overrides.update(key, atime_ns=changes["atime_ns"])
        known, cached = self.meta.lookup(key)
        base = cached if cached is not None and cached.is_dir == entry.is_dir else entry
        shown = {name: value for name, value in changes.items() if name in ("mode", "uid", "gid")}
        if "mtime_ns" in changes:
            shown["mtime"] = seconds(changes["mtime_ns"])  # type: ignore[assignment]
            self._forget_write(key)
        self.meta.set(key, replace(base, **shown))

    def _write_metadata(self, key: str, fields: dict[str, Any]) -> bool:
        """``set_metadata(key, **fields)``; return whether the owner in *fields* was set.

        A store run by a user who may not give files away refuses a new owner (``EPERM``):
        the rest is still kept, the owner not. Other errors are raised.
        """
        try:
            self.store.set_metadata(key, **fields)
            return True
        except OSError as error:
            if error.errno != errno.EPERM or ("uid" not in fields and "gid" not in fields):
                raise
        rest = {name: value for name, value in fields.items() if name not in ("uid", "gid")}
        if rest:
            self.store.set_metadata(key, **rest)
        return False

    def _write_waiting_metadata(self, key: str) -> Overrides | None:
        """Write what chmod, chown, utimens or the creation of *key* left waiting for its upload.

        Returns what was written (None: nothing). A failure is logged, and what could not
        be written stays in memory.
        """
        waiting = self.overrides.get(key)
        if waiting is None:
            return None
        waiting = replace(waiting)  # a copy: the overrides change below
        fields = _store_fields({"mode": waiting.mode, "uid": waiting.uid, "gid": waiting.gid, "mtime_ns": waiting.mtime_ns})
        if not fields:
            return None
        try:
            owner = self._write_metadata(key, fields)
        except Exception as error:
            log.error("cannot keep the mode, owner or time of %s in the store (kept in memory): %s", key, error)
            return None
        self.overrides.update(key, mode=None, mtime_ns=None)
        if owner:
            self.overrides.update(key, uid=None, gid=None)
        else:
            waiting.uid = waiting.gid = None
        return waiting

    # ================================================================== the mount's changes

    def stored(self, key: str, size: int, started: float, mtime: float | None = None) -> None:
        """Cache the attributes of *key* after the mount stored *size* bytes under it.

        The write began at *started*; the file shows *mtime* (default: now) from now on,
        also when the store is asked again later (see :class:`Shown`): no request.
        """
        finished = time.time()
        entry = Entry(False, size)
        if self.keeps_metadata:
            entry = self._stored_metadata(key, entry)
            if entry.mtime is not None:
                mtime = entry.mtime
        shown = finished if mtime is None else mtime
        with self._lock:
            self._unstored.discard(key)
            if len(self._shown) >= _SHOWN_LIMIT:
                self._shown.clear()
            # The kernel's pages of this file hold what was just written.
            self._shown[key] = Shown(size, shown, finished, started, finished)
        self.meta.set(key, replace(entry, mtime=shown))

    def _stored_metadata(self, key: str, entry: Entry) -> Entry:
        """*entry* of a value just stored, with the metadata written now or kept from before.

        The store keeps a replaced value's mode and owner; what waited for the upload
        (a new file's mode and owner, a chmod or utimens meanwhile) is written now. The
        mtime is set only where a utimens waited.
        """
        known, previous = self.meta.lookup(key)
        if previous is not None and not previous.is_dir:
            entry = replace(entry, mode=previous.mode, uid=previous.uid, gid=previous.gid)
        written = self._write_waiting_metadata(key)
        if written is not None:
            entry = replace(
                entry,
                mode=entry.mode if written.mode is None else written.mode,
                uid=entry.uid if written.uid is None else written.uid,
                gid=entry.gid if written.gid is None else written.gid,
                mtime=None if written.mtime_ns is None else seconds(written.mtime_ns),
            )
        return entry

    def keep_copy(self, key: str, staged: StagedData) -> None:
        """Give the read cache a copy of the value just uploaded from *staged*.

        A file copy shares the staged file: a later write through the mount drops the
        cache's copy before it changes anything.
        """
        shown = self._shown.get(key)
        if shown is None or shown.finished is None:
            return
        content = staged.share_for_cache(MEMORY_VALUE_LIMIT)
        if isinstance(content, bytes):
            self.read_cache.keep_bytes(key, content, shown.mtime)
        elif content is not None:
            self.read_cache.keep_file(key, content, shown.size, shown.mtime)

    def unchanged(self, key: str, size: int, mtime: float) -> bool:
        """Whether *key* still has the size and mtime the previous open saw (and remember them).

        Stores with whole-second times (S3, GCS) could change a value twice in one
        second: a time is trusted only if it has a fraction, or was already two
        seconds old when it was seen.
        """
        with self._lock:
            shown = self._shown.get(key)
            if (
                shown is not None
                and shown.seen is not None
                and shown.size == size
                and shown.mtime == mtime
                and (mtime % 1 != 0 or shown.seen >= mtime + 2)
            ):
                return True
            now = time.time()
            if shown is None or (shown.size, shown.mtime) != (size, mtime):
                if len(self._shown) >= _SHOWN_LIMIT:
                    self._shown.clear()
                self._shown[key] = Shown(size, mtime, now)
            else:
                shown.seen = now
            return False

    def modified(self, key: str) -> None:
        """The mount changed *key*'s content: the kernel's cached pages of it are stale."""
        with self._lock:
            shown = self._shown.get(key)
            if shown is not None:
                shown.seen = None
        self.read_cache.drop(key)
        overrides = self.overrides.get(key)
        if overrides is not None and overrides.mtime_ns is not None:
            self.overrides.update(key, mtime_ns=None)  # a write sets the mtime to now

    def _forget_write(self, key: str) -> None:
        with self._lock:
            shown = self._shown.get(key)
            if shown is not None:
                shown.started = shown.finished = None

    def clear_setid(self, key: str) -> None:
        """A user other than root writes *key*: it loses its set-user-ID bit (and set-group-ID
        where the group may execute it), as the kernel does on a local disk."""
        entry = self.entry(key)
        if entry is None or entry.is_dir:
            return
        mode = self.attributes(key, entry)["st_mode"]
        if not mode & (stat.S_ISUID | stat.S_ISGID):
            return
        kept = stat.S_IMODE(mode) & ~stat.S_ISUID
        if mode & stat.S_IXGRP:
            kept &= ~stat.S_ISGID
        if kept != stat.S_IMODE(mode):
            self.change_metadata(key, entry, mode=kept)

    def created(self, key: str, mode: int | None) -> None:
        """*key* is a new empty file of this mount's, not stored yet (*mode*: the creator's).

        Without *mode* it is one the kernel still knew after it was released unstored
        (see :meth:`unstored`): it keeps the mode and owner it was given.
        """
        with self._lock:
            self._unstored.discard(key)
        if mode is not None:
            uid, gid, _ = mfusepy.fuse_get_context()
            self.overrides.drop(key)
            self.overrides.update(key, mode=stat.S_IMODE(mode), uid=uid, gid=gid)
            self.directory_changed(parent_key(key))
        self.modified(key)
        self.meta.set(key, Entry(False, 0, None))

    def not_stored(self, key: str, *, remember: bool) -> None:
        """The new file *key* was released without reaching the store.

        With *remember*, the kernel may still send an open of it without ``O_CREAT``
        (see :meth:`unstored`).
        """
        self.meta.set(key, None)
        if remember:
            with self._lock:
                self._unstored.add(key)

    def unstored(self, key: str) -> bool:
        """Whether *key* was created by this mount and released without being stored."""
        return key in self._unstored

    def make_directory(self, key: str, mode: int) -> None:
        """Make the directory *key* with the caller's *mode* and owner."""
        if self.store.supports_directories:
            self.store.put_directory(key)
        else:
            with self._lock:
                self._extra_dirs.add(key)
        uid, gid, _ = mfusepy.fuse_get_context()
        self.overrides.drop(key)
        fields = {"mode": stat.S_IMODE(mode), "uid": uid, "gid": gid}
        entry = DIRECTORY
        if self.keeps_metadata and self.store.supports_directories:
            # The creator's mode and owner, kept by the store (the mode comes after the umask).
            try:
                if self._write_metadata(key, fields):
                    entry = Entry(True, 0, time.time(), fields["mode"], uid, gid)
                else:
                    entry = Entry(True, 0, time.time(), fields["mode"])
                    self.overrides.update(key, uid=uid, gid=gid)
            except Exception as error:
                log.error("cannot keep the mode and owner of %s in the store (kept in memory): %s", key, error)
                self.overrides.update(key, **fields)
        else:
            self.overrides.update(key, **fields)
        self.meta.set(key, entry, empty_directory=True)
        self.directory_changed(key)  # its times: now, also where the store keeps none
        self.directory_changed(parent_key(key))

    def remove_directory(self, key: str) -> None:
        """Remove the empty directory *key*."""
        if self.store.supports_directories:
            self.store.delete_directory(key)
        with self._lock:
            self._extra_dirs.discard(key)
        self.meta.forget_tree(key)
        self.meta.set(key, None)
        self.overrides.drop(key)
        self.directory_changed(parent_key(key))

    def keep_parent(self, key: str) -> None:
        """The directory of *key* stays, even where nothing is stored in it any more."""
        parent = parent_key(key)
        if parent:
            with self._lock:
                self._extra_dirs.add(parent)

    def forget(self, key: str, *, overrides_to: str | None = None) -> None:
        """*key* is gone: everything known of it is dropped (its overrides go to *overrides_to*)."""
        self.meta.set(key, None)
        if overrides_to is None:
            self.overrides.drop(key)
        else:
            self.overrides.move(key, overrides_to)
        with self._lock:
            self._shown.pop(key, None)
            self._unstored.discard(key)
            self._specials.pop(key, None)
        self.read_cache.drop(key)
        self.keep_parent(key)
        self.directory_changed(parent_key(key))

    # ================================================================== changes by other hosts

    def forget_cached(self, key: str) -> None:
        """Another host changed *key*: drop its cached entry, version shown and read-cache copy.

        Without the version shown, the next open does not keep the kernel's pages
        (see :meth:`unchanged`), so even a same-size change in the same second is read.
        """
        self.meta.drop(key)
        with self._lock:
            self._shown.pop(key, None)
        self.read_cache.drop(key)

    def forget_cached_listing(self, directory: str) -> None:
        """Another host changed a name in *directory*: drop its cached listing."""
        self.meta.drop_listing(directory)

    def forget_cached_tree(self, directory: str) -> None:
        """Another host moved or removed *directory*: drop everything cached below it."""
        self.meta.forget_tree(directory)
        below = directory + "/"
        with self._lock:
            for key in [k for k in self._shown if k.startswith(below)]:
                del self._shown[key]
        self.read_cache.drop_tree(directory)

    def forget_all_cached(self) -> None:
        """Changes by other hosts may have been missed: drop every cache (not local-only state)."""
        self.meta.clear()
        with self._lock:
            self._shown.clear()
        self.read_cache.clear()

    def move(self, source: str, target: str, moving: Entry, size: int, *, stored: bool, started: float) -> None:
        """The file *source* (that was *moving*) is now *target*, of *size* bytes.

        *stored*: its value moved in the store (which may give it a new time: the one
        shown stays), else it waits for its first upload. Began at *started*.
        """
        self.meta.set(source, None)
        self.meta.set(target, replace(moving, size=size))
        finished = time.time()
        with self._lock:
            shown = self._shown.pop(source, None)
            self._shown.pop(target, None)
            unstored = source in self._unstored
            self._unstored.discard(source)
            self._unstored.discard(target)
            if unstored:
                self._unstored.add(target)
            # The kernel keeps the inode's pages across a rename: so does what it saw.
            seen = shown.seen if shown is not None else None
            if stored and moving.mtime is not None:
                if shown is None or (shown.size, shown.mtime) != (size, moving.mtime):
                    seen = None
                self._shown[target] = Shown(size, moving.mtime, seen, started, finished)
            elif shown is not None and seen is not None:
                self._shown[target] = Shown(shown.size, shown.mtime, seen)
        self.read_cache.move(source, target, moving.mtime if stored else None)
        self.overrides.move(source, target)
        self.renamed(source, target)

    def move_tree(self, source: str, target: str, started: float) -> None:
        """The directory *source* is now *target*, with everything below it.

        The versions shown move along (the store may give the moved values new times:
        the ones shown stay), and so do the names created but not stored yet.
        """
        below = source + "/"
        finished = time.time()

        def moved(key: str) -> str:
            return target + key[len(source) :]

        with self._lock:
            for key in [k for k in self._extra_dirs if k == source or k.startswith(below)]:
                self._extra_dirs.discard(key)
                self._extra_dirs.add(moved(key))
            for key in [k for k in self._shown if k.startswith(below)]:
                shown = self._shown.pop(key)
                self._shown[moved(key)] = Shown(shown.size, shown.mtime, shown.seen, started, finished)
            for key in [k for k in self._unstored if k.startswith(below)]:
                self._unstored.discard(key)
                self._unstored.add(moved(key))
            for key in [k for k in self._specials if k.startswith(below)]:
                self._specials[moved(key)] = self._specials.pop(key)
        self.overrides.move(source, target, tree=True)
        self.read_cache.drop_tree(source)
        self.meta.forget_tree(source)
        self.meta.forget_tree(target)
        self.meta.set(source, None)
        self.meta.set(target, DIRECTORY)
        self.renamed(source, target)

    def move_special(self, source: str, target: str) -> None:
        """The FIFO, socket or device *source* is now *target*."""
        with self._lock:
            self._specials[target] = self._specials.pop(source)
        self.overrides.move(source, target)
        self.renamed(source, target)

    def renamed(self, source: str, target: str) -> None:
        """A rename changed both directories and the name moved (its ctime)."""
        now = time.time_ns()
        self.overrides.update(target, ctime_ns=now)
        self.directory_changed(parent_key(source), now)
        self.directory_changed(parent_key(target), now)

    def changed(self, key: str) -> None:
        """The attributes or the content of *key* changed through the mount: its ctime is now."""
        self.overrides.update(key, ctime_ns=time.time_ns())

    def directory_changed(self, directory: str, now: int | None = None) -> None:
        """A name was added to or removed from *directory*: its mtime and ctime are now.

        Kept in memory: the store's time of a directory (where it has one) is not moved
        by every change in it.
        """
        now = time.time_ns() if now is None else now
        self.overrides.update(directory, mtime_ns=now, ctime_ns=now)

    def added(self, key: str, entry: Entry) -> None:
        """*key* is new: *entry*, owned by the caller."""
        uid, gid, _ = mfusepy.fuse_get_context()
        self.overrides.drop(key)
        self.overrides.update(key, uid=uid, gid=gid, ctime_ns=time.time_ns())
        if entry.is_special:
            with self._lock:
                self._specials[key] = entry
        else:
            self.meta.set(key, entry)
        self.directory_changed(parent_key(key))


__all__ = ["Namespace", "directory_entry", "seconds"]
