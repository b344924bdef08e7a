"""Stores on the local filesystem: :class:`FilesystemStore` and :class:`WebFilesystemStore`.

Every value is one regular file below the store's root; the components of a key are
directories (``a/b/c`` is the file ``ROOT/a/b/c``). Writes go to a temporary file in
the target directory and are renamed into place, so a reader sees the old value or the
new one, never a part. No symbolic link inside the root is ever followed: intermediate
directories are opened one by one with ``O_NOFOLLOW``, and a symlink where a key would
be is not a key. The files' modes, owners and times are the keys' metadata
(``keeps_metadata``); a value written again keeps its file's mode and owner. POSIX only.
"""

from __future__ import annotations

import errno
import io
import itertools
import math
import os
import secrets
import stat
import sys
import urllib.parse
from collections.abc import Callable, Generator, Iterator
from typing import IO, Any, ClassVar

from .errors import BackendError, KeyNotFoundError, KvfsError, NotADirectoryKeyError
from .keys import SEPARATOR, is_valid_key
from .mixins import CopyMixin, UrlMixin
from .store import CHUNK_SIZE, KeyInfo, KeyValueStore

# O_NONBLOCK: opening a FIFO that sits where a key would be must not hang; it has no
# effect on regular files (open(2)), and anything but a regular file is refused anyway.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# The root itself may be a link: the user chose it.
_ROOT_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# Staging files: unnamed (O_TMPFILE: gone with the last descriptor, even if the process
# is killed), else named and readable too.
_TMPFILE_FLAGS = os.O_RDWR | os.O_TMPFILE | os.O_CLOEXEC if hasattr(os, "O_TMPFILE") else None
_NAMED_STAGING_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
# A handle on a name itself, for metadata changes: needs no read permission, and with
# O_NOFOLLOW a symbolic link is opened as the link, which is then refused.
_PATH_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_NOFOLLOW | os.O_CLOEXEC

#: errno values meaning "there is no key (or directory) here": missing, a file where a
#: directory should be, or a symbolic link refused by O_NOFOLLOW.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP})

#: errno values of an O_TMPFILE open meaning "this filesystem has none": a named file is used.
_NO_TMPFILE = frozenset({errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL})

#: errno values of linkat that mean "cannot link this file there" (another filesystem,
#: no /proc): the staged value is copied instead.
_NO_LINK = frozenset({errno.EXDEV, errno.ENOENT, errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK})

#: errno values of copy_file_range that mean "not between these files": use read/write.
_NO_COPY_FILE_RANGE = frozenset(
    {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
)

# Temporary names contain ':', which no key may contain: they never collide with a key
# and listings skip them. A per-process token (new after fork) and a counter make them
# unique across processes and threads without a random number per write.
_temporary_counter = itertools.count()
_temporary_token = ""


def _new_temporary_token() -> None:
    global _temporary_token
    _temporary_token = f".kvfs:{os.getpid():x}{secrets.token_hex(4)}:"


_new_temporary_token()
os.register_at_fork(after_in_child=_new_temporary_token)


def _temporary_name() -> str:
    return f"{_temporary_token}{next(_temporary_counter)}"


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    try:
        written = os.write(fd, data)
        if written < len(data):  # rare: a signal or a nearly full disk
            view = memoryview(data)
            while written < len(view):
                written += os.write(fd, view[written:])
    except OSError as error:
        raise _backend_error(error) from error


def _copy_descriptor(source: int, target: int, bufsize: int) -> None:
    """Copy *source* from its offset to its end into *target*, in the kernel if it can."""
    try:
        while os.copy_file_range(source, target, 1 << 30):
            pass
        return
    except OSError as error:
        if error.errno not in _NO_COPY_FILE_RANGE:
            raise _backend_error(error) from error
    # Offsets advanced by a partial copy_file_range are kept, so this resumes correctly.
    try:
        while chunk := os.read(source, bufsize):
            _write_all(target, chunk)
    except OSError as error:
        raise _backend_error(error) from error


def _backend_error(error: OSError) -> OSError:
    """*error* as a :class:`~kvfs.errors.BackendError`, keeping errno and message."""
    if isinstance(error, KvfsError):
        return error
    if error.errno is None:
        return BackendError(*error.args)
    if error.filename is None:
        return BackendError(error.errno, error.strerror)
    return BackendError(error.errno, error.strerror, error.filename)


def _key_info(key: str, info: os.stat_result, is_prefix: bool = False) -> KeyInfo:
    """What a stat of a value's file (or, *is_prefix*, of a directory ``key``) tells."""
    size = None if is_prefix else info.st_size
    return KeyInfo(key, size, info.st_mtime, is_prefix, stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid)


def _nanoseconds(seconds: float) -> int:
    """*seconds* in whole nanoseconds, the fraction rounded on its own (a float has too few digits for both)."""
    whole = math.floor(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def _keep_owner_and_mode(fd: int, old: os.stat_result) -> None:
    """Give the new file *fd* the owner and mode of the file *old* it replaces.

    The owner is changed first (a new owner clears the set-user-ID bit), and only where
    it differs; a process that may not give files away keeps its own.
    """
    new = os.fstat(fd)
    if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
        try:
            os.fchown(fd, old.st_uid, old.st_gid)
            new = os.fstat(fd)
        except PermissionError:
            pass
    if stat.S_IMODE(old.st_mode) != stat.S_IMODE(new.st_mode):
        os.fchmod(fd, stat.S_IMODE(old.st_mode))


def _remove_quietly(name: str, dir_fd: int | None) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


class _StagingFile(io.FileIO):
    """A staging file of *store*: unnamed (O_TMPFILE) when *path* is None, else the
    temporary file *path*, which is removed when the file is closed uncommitted."""

    def __init__(self, fd: int, store: FilesystemStore, path: str | None) -> None:
        super().__init__(fd, "r+b")
        self.store: FilesystemStore | None = store
        self.path = path

    def close(self) -> None:
        path, self.path = self.path, None
        try:
            super().close()
        finally:
            if path is not None:
                _remove_quietly(path, None)


class FilesystemStore(UrlMixin, CopyMixin, KeyValueStore):
    """Stores every value as a file below the directory *root*.

    *root* is created (with its parents) on the first write, or at construction with
    *create_if_missing*; :meth:`~kvfs.store.KeyValueStore.check` raises
    :class:`~kvfs.errors.BackendError` while it does not exist. New files get the mode
    *perm* when it is given, else ``0o666`` minus the umask, as with simplekv; new
    directories get *perm* plus the search bit wherever it grants read (``0o640`` gives
    ``0o750``), else ``0o777`` minus the umask. *bufsize* is the chunk size for
    streaming a file object in. With *fsync* every write is flushed to disk (the file
    before its rename, the directory after), so a value survives a power failure.

    Raises, beyond the contract of :class:`~kvfs.store.KeyValueStore`:

    * :class:`~kvfs.errors.NotADirectoryKeyError` (an ``OSError``) when a key and a
      directory would need the same name: storing ``a/b`` while ``a`` is a key, or ``a``
      while keys exist below ``a/`` (a file cannot also be a directory). The same error
      is raised where a symbolic link sits in the way of a write;
    * :class:`~kvfs.errors.BackendError` (an ``OSError``, with the original ``errno``)
      when the filesystem fails: permissions, a full disk, a root that is not a directory.

    Symbolic links, FIFOs, devices and names that are not valid key components (such as
    the ``:``-containing temporary files of unfinished writes) are not keys: reading
    them raises ``KeyError`` and listings skip them. Deleting a key leaves its (perhaps
    now empty) parent directories, which then list as empty directories.

    The files' and directories' modes, owners and mtimes are the store's metadata
    (``keeps_metadata``): :meth:`stat`, :meth:`describe` and :meth:`iter_level` report
    them, :meth:`set_metadata` changes them (``chmod``, ``chown``, ``utime`` of the file or
    directory, never through a symbolic link). A value written again (``put``, a
    committed staging file) keeps the mode and owner of the file it replaces (the owner
    only where the process may set it: as root); *perm* is for new files.
    """

    max_component_length = 255  # NAME_MAX of Linux filesystems
    fast_stat = True
    fast_ranges = True
    fast_level_listing = True
    listing_has_sizes = True
    supports_directories = True
    allows_key_and_prefix = False
    supports_staging = True
    keeps_metadata = True
    listing_has_metadata = True

    def __init__(
        self,
        root: str | os.PathLike[str],
        perm: int | None = None,
        *,
        bufsize: int = CHUNK_SIZE,
        fsync: bool = False,
        create_if_missing: bool = False,
    ) -> None:
        #: The root directory as given.
        self.root = os.fspath(root)
        #: The mode of new files, or None for ``0o666`` minus the umask.
        self.perm = perm
        #: The chunk size for streaming a file object into the store.
        self.bufsize = bufsize
        #: Whether writes are flushed to disk before they return.
        self.fsync = fsync
        # Absolute now, so a later chdir cannot move the store.
        self._root = os.path.abspath(self.root)
        self._root_slash = os.path.join(self._root, "")
        self._directory_mode = 0o777 if perm is None else perm | ((perm & 0o444) >> 2)
        if create_if_missing:
            try:
                self._make_root()
            except OSError as error:
                raise _backend_error(error) from error

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    def _travelling_arguments(self, arguments: dict[str, Any]) -> dict[str, Any]:
        # The absolute root: the other process may run in another working directory.
        return {**arguments, "root": self._root}

    # ------------------------------------------------------------------ paths

    def _open_directory(self, path: str, create: bool = False) -> int:
        """Open the directory *path* (``""`` is the root, else ``a/b``) without symlinks.

        Each component is opened relative to its parent with ``O_NOFOLLOW``, so no
        symbolic link inside the root is followed even if one appears meanwhile. With
        *create*, missing directories (the root too) are made. Raises ``OSError``:
        ``ENOENT``, ``ENOTDIR`` or ``ELOOP`` where a component is missing, a file or a
        symbolic link.
        """
        try:
            fd = os.open(self._root, _ROOT_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            self._make_root()
            fd = os.open(self._root, _ROOT_FLAGS)
        if not path:
            return fd
        try:
            for name in path.split(SEPARATOR):
                child = self._open_child_directory(fd, name, create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_child_directory(self, parent: int, name: str, create: bool) -> int:
        try:
            return os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        try:
            os.mkdir(name, self._directory_mode, dir_fd=parent)
            made = True
        except FileExistsError:  # made by another writer meanwhile (or not a directory)
            made = False
        child = os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)
        if made and self.perm is not None:
            os.fchmod(child, self._directory_mode)  # exact, whatever the umask
        return child

    def _make_root(self) -> None:
        os.makedirs(self._root, self._directory_mode, exist_ok=True)
        if self.perm is not None:
            os.chmod(self._root, self._directory_mode)

    def _check(self) -> None:
        try:
            os.close(os.open(self._root, _ROOT_FLAGS))
        except FileNotFoundError:
            raise BackendError(errno.ENOENT, f"the store's directory {self._root} does not exist") from None
        except NotADirectoryError:
            raise BackendError(errno.ENOTDIR, f"the store's root {self._root} is not a directory") from None
        except OSError as error:
            raise _backend_error(error) from error

    def _locate(self, key: str, create: bool = False) -> tuple[int | None, str]:
        """Return ``(dir_fd, name)`` for *key*, for the ``*at`` system calls.

        A key without ``/`` needs no directory walk: its absolute path with
        ``dir_fd=None``, since the root itself may be a link the user chose. Otherwise
        the opened parent directory (the caller closes it) and the last component.
        """
        cut = key.rfind(SEPARATOR)
        if cut == -1:
            return None, self._root_slash + key
        return self._open_directory(key[:cut], create), key[cut + 1 :]

    def _conflict(self, key: str, error: OSError, directory: bool = False) -> OSError:
        """The error for a write of *key* (a *directory*) that met *error*.

        A name conflict becomes a :class:`~kvfs.errors.NotADirectoryKeyError` naming the
        component in the way; anything else a :class:`~kvfs.errors.BackendError`.
        """
        if error.errno not in (errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
            return _backend_error(error)
        if not os.path.isdir(self._root):
            return BackendError(errno.ENOTDIR, f"the store's root {self._root!r} is not a directory")
        what = f"cannot make the directory {key!r}" if directory else f"cannot store {key!r}"
        path = self._root
        components = key.split(SEPARATOR)
        for depth, name in enumerate(components, 1):
            path = os.path.join(path, name)
            last = depth == len(components)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                break
            if stat.S_ISLNK(mode):
                why = "is a symbolic link, which a FilesystemStore never follows"
            elif stat.S_ISREG(mode) and (directory or not last):
                why = "is a key, so it cannot also be a directory"
            elif stat.S_ISDIR(mode) and last and not directory:
                why = "is a directory, so it cannot also be a key"
            elif not stat.S_ISDIR(mode) and not stat.S_ISREG(mode):
                why = "is neither a file nor a directory"
            else:
                continue
            culprit = SEPARATOR.join(components[:depth])
            return NotADirectoryKeyError(error.errno, f"{what}: {culprit!r} {why}")
        return NotADirectoryKeyError(error.errno, f"{what}: a key and a directory cannot share a name")

    # ------------------------------------------------------------------ reading

    def _open_value(self, key: str) -> tuple[int, os.stat_result]:
        """Open *key*'s file and return it with its stat; ``KeyError`` unless a regular file."""
        dir_fd = None
        try:
            fd = self._open_beneath(key) if SEPARATOR in key else None
            if fd is None:
                dir_fd, name = self._locate(key)
                fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            if error.errno in _NOT_THERE:
                raise KeyNotFoundError(key) from None
            raise _backend_error(error) from error
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        try:
            info = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            raise _backend_error(error) from error
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise KeyNotFoundError(key)
        return fd, info

    def _open_beneath(self, key: str) -> int | None:
        """Open *key*'s file with one ``openat2`` below the root, refusing every link on the way.

        The same as the walk of :meth:`_open_directory` in two system calls instead of
        two per directory. None where the kernel has no ``openat2`` (before Linux 5.6,
        or refused by a seccomp filter): then the caller walks. Raises ``OSError``.
        """
        openat2 = _OpenAt2.get()
        if openat2 is None:
            return None
        root = os.open(self._root, _ROOT_FLAGS)
        try:
            return openat2(root, key, _READ_FLAGS)
        finally:
            os.close(root)

    def _lstat(self, key: str) -> os.stat_result | None:
        """The stat of *key*'s name (links not followed), or None where nothing is."""
        dir_fd = None
        try:
            dir_fd, name = self._locate(key)
            return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as error:
            if error.errno in _NOT_THERE:
                return None
            raise _backend_error(error) from error
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    def _get(self, key: str) -> bytes:
        fd, info = self._open_value(key)
        try:
            # Our writes replace files whole, so the opened file keeps its size.
            return _read_at(fd, info.st_size, 0)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            os.close(fd)

    def _open(self, key: str) -> IO[bytes]:
        fd, _ = self._open_value(key)
        try:
            return open(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def _has_key(self, key: str) -> bool:
        info = self._lstat(key)
        return info is not None and stat.S_ISREG(info.st_mode)

    def _stat(self, key: str) -> KeyInfo:
        info = self._lstat(key)
        if info is None or not stat.S_ISREG(info.st_mode):
            raise KeyNotFoundError(key)
        return _key_info(key, info)

    def _describe(self, key: str) -> KeyInfo | None:
        # One lstat tells a value from a directory.
        info = self._lstat(key)
        if info is None:
            return None
        if stat.S_ISDIR(info.st_mode):
            return _key_info(key + SEPARATOR, info, is_prefix=True)
        if stat.S_ISREG(info.st_mode):
            return _key_info(key, info)
        return None

    def _describe_root(self) -> KeyInfo | None:
        try:
            info = os.stat(self._root)  # the root may be a link the user chose
        except OSError as error:
            if error.errno in _NOT_THERE:
                return None
            raise _backend_error(error) from error
        return _key_info("", info, is_prefix=True) if stat.S_ISDIR(info.st_mode) else None

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
        """chown, chmod and utime of the key's file or directory, through an ``O_PATH`` handle.

        The handle is opened without following a link (and the walk to it neither), so
        a link put in place meanwhile is refused rather than followed out of the root;
        the changes then go through ``/proc/self/fd``, which names that very file.
        """
        dir_fd = fd = None
        try:
            dir_fd, name = self._locate(key)
            fd = os.open(name, _PATH_FLAGS, dir_fd=dir_fd)
            info = os.fstat(fd)
            if not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                raise KeyNotFoundError(key)
            path = f"/proc/self/fd/{fd}"
            owner = (info.st_uid if uid is None else uid, info.st_gid if gid is None else gid)
            if owner != (info.st_uid, info.st_gid):
                os.chown(path, *owner)
            if mode is not None:
                os.chmod(path, mode)
            if mtime is not None or atime is not None:
                os.utime(
                    path,
                    ns=(
                        info.st_atime_ns if atime is None else _nanoseconds(atime),
                        info.st_mtime_ns if mtime is None else _nanoseconds(mtime),
                    ),
                )
        except OSError as error:
            if error.errno in _NOT_THERE and fd is None:
                raise KeyNotFoundError(key) from None
            raise _backend_error(error) from error
        finally:
            for descriptor in (fd, dir_fd):
                if descriptor is not None:
                    os.close(descriptor)

    def _get_range(self, key: str, start: int, length: int) -> bytes:
        fd, info = self._open_value(key)
        # No buffer larger than what is there: a huge length must not allocate it.
        length = min(length, max(info.st_size - start, 0))
        try:
            return _read_at(fd, length, start)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ writing

    def _store(self, key: str, fill: Callable[[int], object]) -> str:
        """Write *key* atomically: *fill* writes the value into a new temporary file.

        The temporary file is made in the key's directory and renamed over the key, so
        readers never see a partial value. On any failure the temporary file is
        removed and the old value (if any) is left as it was. Errors of the caller's
        file (raised by *fill*) pass unchanged; the filesystem's become a
        :class:`~kvfs.errors.BackendError` or a :class:`~kvfs.errors.NotADirectoryKeyError`.
        """
        dir_fd = temporary = None
        filling = False
        try:
            dir_fd, name = self._locate(key, create=True)
            fd, temporary = self._create_temporary(dir_fd)
            try:
                filling = True
                fill(fd)
                filling = False
                self._ready_to_replace(fd, name, dir_fd)
            finally:
                os.close(fd)
            os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            temporary = None
            if self.fsync:
                self._fsync_directory(dir_fd)
            return key
        except OSError as error:
            if filling:
                raise
            raise self._conflict(key, error) from error
        finally:
            if temporary is not None:
                _remove_quietly(temporary, dir_fd)
            if dir_fd is not None:
                os.close(dir_fd)

    def _ready_to_replace(self, fd: int, name: str, dir_fd: int | None) -> None:
        """Give the new file *fd* of *name* the mode and owner of the file it replaces
        (or ``perm`` for a new key), and sync it where the store is built to."""
        old = self._replaced(name, dir_fd)
        if old is not None:
            _keep_owner_and_mode(fd, old)
        elif self.perm is not None:
            os.fchmod(fd, self.perm)
        if self.fsync:
            os.fsync(fd)

    @staticmethod
    def _replaced(name: str, dir_fd: int | None) -> os.stat_result | None:
        """The stat of the value's file that a write of *name* replaces, None for a new key."""
        try:
            info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as error:
            if error.errno in _NOT_THERE:
                return None
            raise
        return info if stat.S_ISREG(info.st_mode) else None

    def _create_temporary(self, dir_fd: int | None, flags: int = _CREATE_FLAGS) -> tuple[int, str]:
        """Create a new temporary file in *dir_fd* (None: the root); return it and its name."""
        temporary = _temporary_name()
        if dir_fd is None:
            temporary = self._root_slash + temporary
        try:
            return os.open(temporary, flags, 0o666, dir_fd=dir_fd), temporary
        except FileNotFoundError:
            if dir_fd is not None:
                raise
        self._make_root()  # only a key without '/' gets here with no root yet
        return os.open(temporary, flags, 0o666), temporary

    def _fsync_directory(self, dir_fd: int | None) -> None:
        if dir_fd is not None:
            os.fsync(dir_fd)
            return
        fd = os.open(self._root, _ROOT_FLAGS)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _put(self, key: str, data: bytes) -> str:
        return self._store(key, lambda fd: _write_all(fd, data))

    def _sync(self, key: str) -> None:
        """``fsync`` the key's file, then its directory and each one above it up to the root.

        The directories hold the names: a value renamed into place, or a directory made
        for it, is durable only once they are synced too. What is missing (a deleted
        key, its directory) is skipped; the directories that exist are still synced.
        """
        components = key.split(SEPARATOR)
        directories: list[int] = []
        try:
            try:
                directories.append(os.open(self._root, _ROOT_FLAGS))
            except FileNotFoundError:
                return
            for name in components[:-1]:
                try:
                    directories.append(os.open(name, _DIRECTORY_FLAGS, dir_fd=directories[-1]))
                except OSError as error:
                    if error.errno not in _NOT_THERE:
                        raise
                    break
            else:
                self._sync_file(directories[-1], components[-1])
            for fd in reversed(directories):
                os.fsync(fd)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            for fd in directories:
                os.close(fd)

    @staticmethod
    def _sync_file(dir_fd: int, name: str) -> None:
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
        except OSError as error:
            if error.errno in _NOT_THERE:
                return
            raise
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                os.fsync(fd)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ staging

    def _new_staging_file(self, key: str) -> IO[bytes]:
        """An unnamed file (O_TMPFILE) in the key's directory, or the root if that is missing.

        Unnamed, it never shows in a listing, does not keep its directory from being
        removed, and disappears with its last descriptor, also when the process is
        killed. A filesystem without O_TMPFILE gets a named temporary file in the root
        (hidden from listings as every temporary file is), removed on close.
        """
        dir_fd = None
        try:
            try:
                dir_fd, _ = self._locate(key)
            except OSError as error:
                if error.errno not in _NOT_THERE:
                    raise
            try:
                fd = self._open_tmpfile(dir_fd)
            except OSError as error:
                if error.errno not in _NO_TMPFILE:
                    raise
            else:
                return _StagingFile(fd, self, None)
            fd, path = self._create_temporary(None, _NAMED_STAGING_FLAGS)
            return _StagingFile(fd, self, path)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    def _open_tmpfile(self, dir_fd: int | None) -> int:
        if _TMPFILE_FLAGS is None:  # not Linux
            raise OSError(errno.EOPNOTSUPP, "no O_TMPFILE")
        if dir_fd is not None:
            return os.open(".", _TMPFILE_FLAGS, 0o666, dir_fd=dir_fd)
        try:
            return os.open(self._root, _TMPFILE_FLAGS, 0o666)
        except FileNotFoundError:
            self._make_root()
            return os.open(self._root, _TMPFILE_FLAGS, 0o666)

    def _commit_staging_file(self, key: str, file: IO[bytes]) -> str:
        """Link the staging file under a temporary name in the key's directory, rename it over the key.

        A named staging file is renamed directly. Where it cannot be linked there
        (another filesystem below the root, no ``/proc``) its content is copied as by
        ``put_file``.
        """
        if not isinstance(file, _StagingFile) or file.store is not self or file.closed:
            raise ValueError("not an open staging file of this store")
        fd = file.fileno()
        dir_fd = temporary = None
        linking = False
        try:
            dir_fd, name = self._locate(key, create=True)
            if dir_fd is None:  # os.link needs a dir_fd to call linkat, which follows the link below
                dir_fd, name = self._open_directory("", create=True), key
            self._ready_to_replace(fd, name, dir_fd)
            if file.path is None:
                temporary, linking = _temporary_name(), True
                os.link(f"/proc/self/fd/{fd}", temporary, dst_dir_fd=dir_fd)
                linking = False
                os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
                temporary = None
            else:
                os.replace(file.path, name, dst_dir_fd=dir_fd)
                file.path = None  # it is the key's file now: not removed on close
            if self.fsync:
                self._fsync_directory(dir_fd)
        except OSError as error:
            if not linking or error.errno not in _NO_LINK:
                raise self._conflict(key, error) from error
            temporary = None
            self._copy_staged(key, fd)
        finally:
            if temporary is not None:
                _remove_quietly(temporary, dir_fd)
            if dir_fd is not None:
                os.close(dir_fd)
        file.store = None
        file.close()
        return key

    def _copy_staged(self, key: str, fd: int) -> None:
        def fill(target: int) -> None:
            os.lseek(fd, 0, os.SEEK_SET)
            _copy_descriptor(fd, target, self.bufsize)

        self._store(key, fill)

    def _put_file(self, key: str, file: IO[bytes]) -> str:
        read, bufsize = file.read, self.bufsize

        def fill(fd: int) -> None:
            # Only an empty read is the end: pipes and sockets return short reads.
            while chunk := read(bufsize):
                _write_all(fd, chunk)

        return self._store(key, fill)

    def _put_filename(self, key: str, filename: str) -> str:
        # Copied, not moved as simplekv did: put_file never changes its source, on any
        # store. copy_file_range lets the kernel copy (or share blocks, on btrfs/XFS).
        source = os.open(filename, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self._store(key, lambda fd: _copy_descriptor(source, fd, self.bufsize))
        finally:
            os.close(source)

    def _copy(self, source: str, dest: str) -> str:
        fd, _ = self._open_value(source)
        try:
            return self._store(dest, lambda target: _copy_descriptor(fd, target, self.bufsize))
        finally:
            os.close(fd)

    def _move(self, source: str, dest: str) -> str:
        return self._rename(source, dest, directory=False)

    def _move_directory(self, source: str, dest: str) -> str:
        # One rename(2) of the real directory: atomic, whatever it holds. Onto a directory
        # that holds something, rename refuses: then the core merges key by key.
        try:
            return self._rename(source, dest, directory=True)
        except BackendError as error:
            if error.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return super()._move_directory(source, dest)
            raise

    def _rename(self, source: str, dest: str, *, directory: bool) -> str:
        """One ``rename(2)`` of *source*'s file (or, with *directory*, its directory) to *dest*.

        Never moves a link, nor a file as a directory or the reverse (``KeyError``).
        """
        info = self._lstat(source)
        if info is None or not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
            raise KeyNotFoundError(source)
        source_fd = dest_fd = None
        try:
            source_fd, source_name = self._locate(source)
            dest_fd, dest_name = self._locate(dest, create=True)
            os.rename(source_name, dest_name, src_dir_fd=source_fd, dst_dir_fd=dest_fd)
            if self.fsync:
                self._fsync_directory(dest_fd)
                if SEPARATOR in source or SEPARATOR in dest:  # two directories changed
                    self._fsync_directory(source_fd)
            return dest
        except FileNotFoundError:
            raise KeyNotFoundError(source) from None  # moved or deleted meanwhile
        except OSError as error:
            raise self._conflict(dest, error, directory=directory) from error
        finally:
            for fd in (source_fd, dest_fd):
                if fd is not None:
                    os.close(fd)

    def _delete(self, key: str) -> None:
        dir_fd = None
        try:
            dir_fd, name = self._locate(key)
            # Only a regular file is a key: a link or a directory here is left alone.
            if stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
                os.unlink(name, dir_fd=dir_fd)
        except OSError as error:
            if error.errno not in _NOT_THERE:
                raise _backend_error(error) from error
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    # ------------------------------------------------------------------ directories

    def _put_directory(self, key: str) -> None:
        try:
            os.close(self._open_directory(key, create=True))
        except OSError as error:
            raise self._conflict(key, error, directory=True) from error

    def _delete_directory(self, key: str) -> None:
        # rmdir only: a directory that still holds something is left as it is, like
        # the marker-less directory of any store with keys below it.
        dir_fd = None
        try:
            dir_fd, name = self._locate(key)
            os.rmdir(name, dir_fd=dir_fd)
        except OSError as error:
            if error.errno not in _NOT_THERE | {errno.ENOTEMPTY, errno.EEXIST}:
                raise _backend_error(error) from error
        finally:
            if dir_fd is not None:
                os.close(dir_fd)

    def _has_directory(self, key: str) -> bool:
        info = self._lstat(key)
        return info is not None and stat.S_ISDIR(info.st_mode)

    # ------------------------------------------------------------------ listing

    def _open_listing(self, directory: str) -> int | None:
        """Open *directory* (``""`` or ``a/b/``) for listing; None if there is none."""
        if directory and not is_valid_key(directory[:-1]):
            return None  # '..', '//' and the like: no key can start with this prefix
        try:
            return self._open_directory(directory[:-1])
        except OSError as error:
            if error.errno in _NOT_THERE:
                return None
            raise _backend_error(error) from error

    def _iter_keys(self, prefix: str) -> Iterator[str]:
        """Walk the tree below *prefix* with ``os.scandir``, yielding keys.

        Empty directories are yielded as markers (``d/``). Links are never followed.
        """
        cut = prefix.rfind(SEPARATOR) + 1
        directory, start = prefix[:cut], prefix[cut:]
        fd = self._open_listing(directory)
        if fd is None:
            return
        try:
            found = yield from self._walk(fd, directory, start)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            os.close(fd)
        if directory and not start and not found:
            yield directory

    def _walk(self, fd: int, directory: str, start: str) -> Generator[str, None, bool]:
        """Yield the keys below the open directory *fd*; return whether it held any entry."""
        files: list[str] = []
        directories: list[str] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(start) or not is_valid_key(name):
                    continue
                if entry.is_file(follow_symlinks=False):
                    files.append(name)
                elif entry.is_dir(follow_symlinks=False):
                    directories.append(name)
        limit = self.max_key_length
        found = False
        for name in files:
            if len(directory) + len(name) <= limit:
                found = True
                yield directory + name
        for name in directories:
            below = directory + name + SEPARATOR
            if len(below) >= limit:
                continue
            try:
                child = os.open(name, _DIRECTORY_FLAGS, dir_fd=fd)
            except OSError as error:
                if error.errno in _NOT_THERE:
                    continue  # removed, or replaced by a link, meanwhile
                raise
            try:
                if not (yield from self._walk(child, below, "")):
                    yield below  # an empty directory: its marker
            finally:
                os.close(child)
            found = True
        return found

    def _iter_level(self, prefix: str, delimiter: str) -> Iterator[KeyInfo]:
        """One ``os.scandir`` of the directory *prefix* names; sizes from its entries."""
        if delimiter != SEPARATOR:
            yield from super()._iter_level(prefix, delimiter)
            return
        cut = prefix.rfind(SEPARATOR) + 1
        directory, start = prefix[:cut], prefix[cut:]
        fd = self._open_listing(directory)
        if fd is None:
            return
        limit = self.max_key_length
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    name = entry.name
                    if not name.startswith(start) or not is_valid_key(name):
                        continue
                    key = directory + name
                    if entry.is_file(follow_symlinks=False):
                        if len(key) > limit:
                            continue
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue  # deleted since the directory was read
                        yield _key_info(key, info)
                    elif entry.is_dir(follow_symlinks=False) and len(key) < limit:
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except FileNotFoundError:
                            continue
                        yield _key_info(key + SEPARATOR, info, is_prefix=True)
        except OSError as error:
            raise _backend_error(error) from error
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ URLs

    def _url_for(self, key: str) -> str:
        """A ``file://`` URL of the key's file (as in simplekv)."""
        return "file://" + urllib.parse.quote(self._root_slash + key)


class WebFilesystemStore(FilesystemStore):
    """A :class:`FilesystemStore` whose root a web server publishes under *url_prefix*.

    ``url_for(key)`` is *url_prefix* followed by the key, percent-quoted with ``/``
    kept (so ``a/b`` maps to the file ``a/b`` below the published root). The prefix is
    prepended as it is, so it usually ends with ``/``. *url_prefix* may also be a
    callable ``url_prefix(store, key)`` returning the prefix, as in simplekv. Other
    arguments are those of :class:`FilesystemStore`.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        url_prefix: str | Callable[[WebFilesystemStore, str], str],
        **kwargs: object,
    ) -> None:
        super().__init__(root, **kwargs)  # type: ignore[arg-type]
        #: The URL under which the root is served, or a callable giving it.
        self.url_prefix = url_prefix

    def _url_for(self, key: str) -> str:
        prefix = self.url_prefix(self, key) if callable(self.url_prefix) else self.url_prefix
        return prefix + urllib.parse.quote(key)


class _OpenAt2:
    """``openat2(2)`` through libc's ``syscall``: a path opened below a directory without
    following any symbolic link (Linux 5.6+). :meth:`get` gives the one instance, or None."""

    _NUMBER = 437  # openat2's number on every Linux architecture
    # RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH
    _RESOLVE = 0x02 | 0x04 | 0x08
    # What says "no openat2 here": too old a kernel, a seccomp filter, an unknown flag.
    _MISSING = frozenset({errno.ENOSYS, errno.EPERM, errno.EINVAL, errno.E2BIG})
    #: The instance once loaded (None: there is none), or False before the first use.
    _instance: ClassVar[_OpenAt2 | None | bool] = False

    def __init__(self, ctypes: Any) -> None:
        self._ctypes = ctypes
        self._syscall = ctypes.CDLL(None, use_errno=True).syscall
        self._syscall.restype = ctypes.c_long

        class How(ctypes.Structure):  # struct open_how
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        self._how = How

    @classmethod
    def get(cls) -> _OpenAt2 | None:
        if cls._instance is False:
            instance = None
            if sys.platform.startswith("linux"):
                try:
                    import ctypes  # loaded at the first read, not by ``import kvfs``

                    instance = cls(ctypes)
                except (ImportError, OSError, AttributeError):
                    pass
            cls._instance = instance
        return cls._instance  # type: ignore[return-value]

    def __call__(self, dir_fd: int, path: str, flags: int) -> int | None:
        """A new descriptor of *path* below *dir_fd*, or None if the kernel cannot; raises ``OSError``."""
        ctypes = self._ctypes
        how = self._how(flags, 0, self._RESOLVE)
        fd = self._syscall(self._NUMBER, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
        if fd >= 0:
            return fd
        code = ctypes.get_errno()
        if code in self._MISSING:
            type(self)._instance = None  # asked once: from now on the caller walks
            return None
        raise OSError(code, os.strerror(code), path)


def _read_at(fd: int, length: int, offset: int) -> bytes:
    """Read *length* bytes at *offset*, fewer only at the end of the file.

    Loops over short reads (a file another program truncated or is still writing).
    """
    data = os.pread(fd, length, offset) if length else b""
    while 0 < len(data) < length:
        chunk = os.pread(fd, length - len(data), offset + len(data))
        if not chunk:
            break
        data += chunk
    return data


__all__ = ["FilesystemStore", "WebFilesystemStore"]
