"""Mounting and unmounting: in this process, in a thread, or as a background daemon.

* :func:`serve` mounts a store object and serves it until the mount is unmounted
  (blocking; what ``kvfs mount --foreground`` runs);
* :func:`mounted` mounts a store object in a background thread of this process for the
  length of a ``with`` block (a store object cannot be handed to another process);
* :func:`start_daemon` mounts a store URL in a detached child process and returns once
  the mount is ready (what ``kvfs mount`` runs);
* :func:`unmount` unmounts, also when the daemon died.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from typing import Any

from ..store import KeyValueStore
from .errors import FuseUnavailableError, MountError
from .options import MountOptions

log = logging.getLogger("kvfs.mount")

#: Seconds to wait for a new mount to become ready.
READY_TIMEOUT = 60.0
#: The kernel's read-ahead for a mount, in KiB, raised from its 128 KiB default where
#: permitted (root): sequential reads then come as 1 MiB requests (``MAX_WRITE`` pages),
#: several in flight at once, instead of one round trip per 128 KiB.
READ_AHEAD_KB = 4096


def check_fuse() -> None:
    """Raise :class:`~kvfs.mount.errors.FuseUnavailableError` unless FUSE can be used here."""
    from .binding import load_mfusepy

    if not os.path.exists("/dev/fuse"):
        raise FuseUnavailableError(errno.ENODEV, "FUSE is not available: /dev/fuse does not exist")
    if shutil.which("fusermount3") is None:
        raise FuseUnavailableError(errno.ENOENT, "fusermount3 was not found: install the fuse3 package")
    load_mfusepy()


def check_mountpoint(mountpoint: str) -> str:
    """Return *mountpoint* made absolute; :class:`MountError` unless it is an empty directory."""
    path = os.path.abspath(mountpoint)
    if is_mounted(path):
        raise MountError(errno.EBUSY, f"{mountpoint} is already a mount point")
    if not os.path.isdir(path):
        what = "does not exist" if not os.path.lexists(path) else "is not a directory"
        raise MountError(errno.ENOTDIR, f"mount point {mountpoint} {what}")
    try:
        empty = not os.listdir(path)
    except OSError as error:
        raise MountError(error.errno, f"cannot read mount point {mountpoint}: {error.strerror}") from None
    if not empty:
        raise MountError(errno.ENOTEMPTY, f"mount point {mountpoint} is not empty")
    return path


def _unescape_mount_field(field: str) -> str:
    # /proc/self/mounts writes space, tab, newline and backslash as octal escapes.
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field


def is_mounted(mountpoint: str) -> bool:
    """Whether *mountpoint* is a mount point, also one whose daemon died."""
    path = os.path.realpath(os.path.abspath(mountpoint)) if os.path.exists(mountpoint) else os.path.abspath(mountpoint)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
            return any(_unescape_mount_field(line.split(" ")[1]) == path for line in mounts if " " in line)
    except OSError:
        return os.path.ismount(path)


def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Unmount *mountpoint* (``fusermount3 -u``); :class:`MountError` if it cannot be.

    A mount whose daemon died ("Transport endpoint is not connected") is unmounted
    too. With *lazy*, a busy mount is detached now and goes away when no longer used.
    """
    path = os.path.abspath(mountpoint)
    if not is_mounted(path):
        raise MountError(errno.EINVAL, f"{mountpoint} is not mounted")
    command = ["fusermount3", "-u", "-z", path] if lazy else ["fusermount3", "-u", path]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode == 0:
        return
    message = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "fusermount3 failed"
    if "not connected" in message and not lazy:
        retry = subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True, text=True, check=False)
        if retry.returncode == 0:
            return
    raise MountError(errno.EBUSY, message.removeprefix("fusermount3: "))


def serve(
    store: KeyValueStore,
    mountpoint: str,
    options: MountOptions | None = None,
    *,
    on_ready: Callable[[], None] | None = None,
    name: str = "kvfs",
) -> None:
    """Mount *store* at *mountpoint* and serve it until the mount is unmounted.

    Blocks; *on_ready* is called (from a FUSE thread) once the mount is usable. Raises
    :class:`MountError` for an unusable mount point, a store that cannot list its keys
    (``supports_listing`` False: a directory could not be shown) or a mount that failed,
    and :class:`~kvfs.mount.errors.FuseUnavailableError` when FUSE is missing.
    """
    if not store.supports_listing:
        raise MountError(errno.EOPNOTSUPP, f"{store!r} cannot list its keys, so it cannot be mounted")
    options = options or MountOptions()
    check_fuse()
    path = check_mountpoint(mountpoint)
    from .binding import KvfsFUSE
    from .operations import KvfsOperations

    def ready() -> None:
        # Called during the kernel's INIT, before its reply: the mount is listed, and
        # the reply (max_readahead, see init_with_config) no longer lowers what is set here.
        raise_read_ahead(path)
        if on_ready is not None:
            on_ready()

    operations = KvfsOperations(store, options, ready)
    arguments: dict[str, Any] = {
        "foreground": True,
        "fsname": name.replace(",", "_"),
        "subtype": "kvfs",
        "default_permissions": True,
    }
    if options.read_only or not store.supports_writes:
        arguments["ro"] = True
    if options.allow_other:
        arguments["allow_other"] = True
    try:
        KvfsFUSE(operations, path, raw_fi=True, **arguments)
    except RuntimeError as error:
        raise MountError(errno.EIO, f"mounting {mountpoint} failed (libfuse error {error})") from None


def raise_read_ahead(mountpoint: str, kib: int = READ_AHEAD_KB) -> bool:
    """Set the read-ahead of the mount at *mountpoint* to *kib* KiB; return whether it was set.

    Best effort: False, silently, where the mount is not found or the setting may not
    be changed (only root may). The mount's device is read from ``/proc/self/mountinfo``
    rather than by ``stat``, which the mount itself would have to answer.
    """
    device = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mounts:
            for line in mounts:
                fields = line.split(" ")
                if len(fields) > 4 and _unescape_mount_field(fields[4]) == mountpoint:
                    device = fields[2]  # the last mount at a point hides the others
        if device is None:
            return False
        with open(f"/sys/class/bdi/{device}/read_ahead_kb", "w", encoding="ascii") as setting:
            setting.write(f"{kib}\n")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def mounted(store: KeyValueStore, mountpoint: str, **options: Any) -> Iterator[str]:
    """Mount *store* at *mountpoint* in a background thread; unmount on exit.

    Keyword arguments are :class:`MountOptions` fields. Yields the absolute mount
    point once it is ready. On exit the mount is unmounted, lazily if it is still busy.
    Raises what :func:`serve` raises.
    """
    settings = MountOptions(**options)
    check_fuse()
    path = check_mountpoint(mountpoint)
    ready = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            serve(store, path, settings, on_ready=ready.set)
        except BaseException as error:  # reported to the waiting caller
            failure.append(error)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name=f"kvfs mount {path}", daemon=True)
    thread.start()
    if not ready.wait(READY_TIMEOUT) or failure:
        if failure:
            raise failure[0]
        raise MountError(errno.ETIMEDOUT, f"mounting {mountpoint} timed out")
    try:
        yield path
    finally:
        _unmount_thread(path, thread)


def _unmount_thread(path: str, thread: threading.Thread) -> None:
    for attempt in range(20):
        if not is_mounted(path):
            break
        try:
            unmount(path, lazy=attempt == 19)
            break
        except MountError:
            time.sleep(0.1)  # busy: a process is still closing a file
    thread.join(30)


# ---------------------------------------------------------------------- daemon


def start_daemon(
    url: str,
    mountpoint: str,
    options: MountOptions | None = None,
    *,
    log_level: str = "WARNING",
    log_file: str | None = None,
) -> int:
    """Mount the store at *url* in a detached child process; return its process id.

    Returns once the mount is ready. Raises :class:`MountError` with the child's
    reason (a bad URL, a failed mount) when it does not get there.
    """
    options = options or MountOptions()
    check_fuse()
    path = check_mountpoint(mountpoint)
    if log_file is not None:
        log_file = os.path.abspath(log_file)
        errors = open(log_file, "ab")  # noqa: SIM115 - handed to the child
    else:
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - read back on failure
    read_end, write_end = os.pipe()
    settings = {"url": url, "mountpoint": path, "options": asdict(options), "log_level": log_level}
    settings["log_file"] = log_file
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "from kvfs.mount.mounter import _daemon; _daemon()", json.dumps(settings), str(write_end)],
            pass_fds=(write_end,),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    finally:
        os.close(write_end)
    try:
        message = _read_message(read_end, child)
    finally:
        os.close(read_end)
    try:
        if message == "ready":
            return child.pid
        if not message:
            child.wait(5)
            errors.seek(0)
            lines = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
            message = lines[-1] if lines else f"the mount process exited with status {child.returncode}"
        raise MountError(errno.EIO, message.removeprefix("error: "))
    finally:
        errors.close()


def _read_message(fd: int, child: subprocess.Popen[bytes]) -> str:
    """The child's one-line report, or "" if it ended (or timed out) without one."""
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            child.kill()
            return "error: the mount did not become ready in time"
        readable, _, _ = select.select([fd], [], [], min(left, 1.0))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    return data.decode(errors="replace").strip()


def _daemon() -> None:
    """The body of the child :func:`start_daemon` starts (not a public entry point)."""
    settings = json.loads(sys.argv[1])
    report_fd = int(sys.argv[2])
    logging.basicConfig(
        level=settings["log_level"].upper(),
        format="%(asctime)s kvfs[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )

    def report(message: str) -> None:
        nonlocal report_fd
        if report_fd >= 0:
            os.write(report_fd, message.encode() + b"\n")
            os.close(report_fd)
            report_fd = -1

    def ready() -> None:
        report("ready")
        if settings["log_file"] is None:
            # Nobody reads the parent's temporary file any more: drop the logs.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)

    try:
        from ..url import open_store

        store = open_store(settings["url"])
    except Exception as error:  # reported to the parent as one line
        report(f"error: cannot open {settings['url']}: {error}")
        sys.exit(1)
    os.chdir("/")
    try:
        serve(store, settings["mountpoint"], MountOptions(**settings["options"]), on_ready=ready, name=_fsname(settings["url"]))
    except Exception as error:
        # An OSError's own sentence, without its "[Errno N]".
        report(f"error: {error.strerror if isinstance(error, OSError) and error.strerror else error}")
        sys.exit(1)
    finally:
        store.close()


def _fsname(url: str) -> str:
    """The source shown by ``mount``/``df``: the URL without credentials."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://{rest.split('@', 1)[1]}"
    return f"kvfs:{url}"


__all__ = [
    "MountError",
    "FuseUnavailableError",
    "serve",
    "mounted",
    "start_daemon",
    "unmount",
    "is_mounted",
    "check_fuse",
    "check_mountpoint",
]
