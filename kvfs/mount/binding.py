"""Loading mfusepy on libfuse3, and the few fixes its FUSE class needs.

mfusepy loads libfuse2 first when both libraries are installed; the mount needs
libfuse3 (open flags in ``create``, ``init`` with a configuration), so it is chosen
here explicitly before mfusepy is imported, unless ``FUSE_LIBRARY_PATH`` names a library.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import threading
from types import ModuleType

from ..errors import MissingExtraError
from .errors import FuseUnavailableError

#: The flag of rename(2) that refuses to replace an existing target.
RENAME_NOREPLACE = 1
#: The flag of rename(2) that swaps source and target.
RENAME_EXCHANGE = 2


def load_mfusepy() -> ModuleType:
    """Import mfusepy bound to libfuse3.

    Raises :class:`~kvfs.errors.MissingExtraError` when mfusepy is not installed and
    :class:`FuseUnavailableError` when libfuse3 cannot be loaded.
    """
    if not os.environ.get("FUSE_LIBRARY_PATH"):
        os.environ["FUSE_LIBRARY_NAME"] = "fuse3"
    try:
        import mfusepy
    except ImportError as error:
        raise MissingExtraError("mfusepy", "mount") from error
    except OSError as error:
        raise FuseUnavailableError(
            errno.ENOENT, f"libfuse3 is not installed ({error}): install the fuse3 package"
        ) from None
    if mfusepy.fuse_version_major != 3:
        raise FuseUnavailableError(
            errno.ENOENT,
            f"mfusepy was loaded with libfuse {mfusepy.fuse_version_major}, kvfs needs libfuse3 "
            "(import kvfs.mount before mfusepy, or set FUSE_LIBRARY_NAME=fuse3)",
        )
    return mfusepy


mfusepy = load_mfusepy()


def kernel_drops_pages_around_direct_writes(release: str) -> bool:
    """Whether a kernel of this *release* keeps other handles' cached pages right around a direct write.

    A write through a FOPEN_DIRECT_IO handle skips the page cache; Linux drops the
    pages of the written range before (6.6) and after (6.19, backported to 6.18.3 and
    6.6.120) each such write, so readers on other handles and shared mmaps never see
    stale data. Older kernels keep the stale pages.
    """
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if match is None:
        return False
    version = tuple(int(part or 0) for part in match.groups())
    return version >= (6, 19) or (6, 18, 3) <= version < (6, 19) or (6, 6, 120) <= version < (6, 7)


#: Write-only handles bypass the kernel's page cache (one copy less per write) where safe.
DIRECT_WRITES = kernel_drops_pages_around_direct_writes(os.uname().release)


_thread_state = threading.local()
# readdir flags of libfuse3 (fuse.h).
_READDIR_PLUS = 1
_FILL_DIR_PLUS = 2
_STAT_SIZE = ctypes.sizeof(mfusepy.c_stat)
# A memoryview over raw memory, without a ctypes array type per size (ctypes caches
# those for ever): libfuse's read and write buffers, valid during one request.
_memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
_memory_view.restype = ctypes.py_object
_memory_view.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
_PYBUF_READ, _PYBUF_WRITE = 0x100, 0x200
_TIMES = (("st_atime", "st_atimespec"), ("st_mtime", "st_mtimespec"), ("st_ctime", "st_ctimespec"))
_PLAIN_FIELDS = ("st_ino", "st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_rdev", "st_blocks", "st_blksize")


def fill_stat(st: mfusepy.c_stat, attributes: dict) -> None:
    """Fill a zeroed ``struct stat`` from the operations' attributes (times in ns).

    What ``mfusepy.set_st_attrs`` does for the fields the mount sets, without probing
    every name: ``getattr`` is the most frequent request.
    """
    for name in _PLAIN_FIELDS:
        value = attributes.get(name)
        if value is not None:
            setattr(st, name, value)
    for name, field in _TIMES:
        value = attributes.get(name)
        if value is not None:
            timespec = getattr(st, field)
            timespec.tv_sec, timespec.tv_nsec = divmod(value, 1_000_000_000)


class KvfsFUSE(mfusepy.FUSE):
    """mfusepy's FUSE, passing what its libfuse3 wrappers drop, and faster.

    Each ctypes callback on a thread Python did not start (libfuse's workers) makes and
    destroys a Python thread state; keeping one per worker thread (an unmatched
    ``PyGILState_Ensure``) makes every request cheaper. ``getattr`` fills the stat
    buffer directly; ``read`` and ``write`` pass a view of libfuse's buffer instead of
    copies.

    mfusepy ignores the file handle of ``truncate``/``chmod``/``chown``/``utimens`` and
    the flags of ``rename``. With ``nullpath_ok`` an open file that was unlinked has no
    path, so the handle is the only way to find it; and a ``RENAME_NOREPLACE`` that were
    ignored would replace a file the caller wanted kept. Its ``flock`` decodes a path
    that libfuse leaves NULL there, always with ``nullpath_ok``.
    """

    def _wrapper(self, func, *args, **kwargs):
        if not getattr(_thread_state, "kept", False):
            ctypes.pythonapi.PyGILState_Ensure()
            _thread_state.kept = True
        return super()._wrapper(func, *args, **kwargs)

    def readdir_fuse_3(self, path, buf, filler, offset, fip, flags):
        # mfusepy fills only names and types, at offset 0. libfuse 3.14 drops the
        # attributes of READDIRPLUS entries filled at offset 0, so the kernel would send a
        # LOOKUP per name anyway: entries are filled with offsets (entry i has i + 1), page
        # by page, until libfuse's buffer is full; the next call resumes at its offset.
        plus = bool(flags & _READDIR_PLUS)
        fill_flags = _FILL_DIR_PLUS if plus else 0
        decoded, fh = self._decode(path), fip.contents.fh
        st = mfusepy.c_stat()
        while True:
            page = self.operations.readdir_page(decoded, fh, offset, plus)
            for name, attributes in page:
                offset += 1
                ctypes.memset(ctypes.byref(st), 0, _STAT_SIZE)
                fill_stat(st, attributes)
                if filler(buf, name.encode(self.encoding, self.errors), st, offset, fill_flags) != 0:
                    return 0
            if not page:
                return 0

    def getattr_fuse_3(self, path, buf, fip):
        attributes = self.operations.getattr(self._decode(path), fip.contents if fip else None)
        ctypes.memset(buf, 0, _STAT_SIZE)
        fill_stat(buf.contents, attributes)
        return 0

    def write(self, path, buf, size, offset, fip):
        # mfusepy copies the request into a bytes object; a view of libfuse's buffer
        # spares that copy of every (up to 1 MiB) write. The view is only valid during
        # the call: the operations copy what they keep.
        address = ctypes.cast(buf, ctypes.c_void_p).value
        if not size or address is None:
            return self.operations.write(self._decode(path), b"", offset, fip.contents)
        with _memory_view(address, size, _PYBUF_READ) as data:
            return self.operations.write(self._decode(path), data, offset, fip.contents)

    def read(self, path, buf, size, offset, fip):
        # Read straight into libfuse's buffer: no bytes object, no copy of it.
        address = ctypes.cast(buf, ctypes.c_void_p).value
        if not size or address is None:
            return 0
        with _memory_view(address, size, _PYBUF_WRITE) as buffer:
            return self.operations.read_into(self._decode(path), buffer, offset, fip.contents)

    def _decode(self, path: bytes | None) -> str | None:
        return None if path is None else path.decode(self.encoding, self.errors)

    def _fh(self, fip):  # the fuse_file_info (operations run with raw_fi=True), or None
        return fip.contents if fip else None

    def truncate_fuse_3(self, path, length, fip):
        return self.operations.truncate(self._decode(path), length, self._fh(fip))

    def chmod_fuse_3(self, path, mode, fip):
        return self.operations.chmod(self._decode(path), mode, self._fh(fip))

    def chown_fuse_3(self, path, uid, gid, fip):
        # -1 ("leave unchanged") arrives as the unsigned maximum.
        uid = -1 if uid == 0xFFFFFFFF else uid
        gid = -1 if gid == 0xFFFFFFFF else gid
        return self.operations.chown(self._decode(path), uid, gid, self._fh(fip))

    def utimens_fuse_3(self, path, buf, fip):
        times = None
        if buf:
            atime, mtime = buf.contents.actime, buf.contents.modtime
            times = (atime.tv_sec * 10**9 + atime.tv_nsec, mtime.tv_sec * 10**9 + mtime.tv_nsec)
        return self.operations.utimens(self._decode(path), times, self._fh(fip))

    def flock(self, path, fip, op):
        # mfusepy decodes the path, which libfuse leaves NULL (nullpath_ok): the handle names the file.
        return self.operations.flock(self._decode(path), self._fh(fip), op)

    def rename_fuse_3(self, old, new, flags):
        if flags & ~RENAME_NOREPLACE:
            return -errno.EINVAL  # RENAME_EXCHANGE, RENAME_WHITEOUT: callers fall back
        return self.operations.rename(self._decode(old), self._decode(new), flags)


__all__ = ["mfusepy", "KvfsFUSE", "DIRECT_WRITES", "kernel_drops_pages_around_direct_writes", "FuseUnavailableError", "load_mfusepy", "RENAME_NOREPLACE"]
