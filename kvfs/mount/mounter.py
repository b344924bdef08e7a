"""Mounting and unmounting: in this process, in a thread, or as a background daemon.

* :func:`serve` mounts a store object and serves it until the mount is unmounted
  (blocking; what ``kvfs mount --foreground`` runs);
* :func:`mounted` mounts a store object in a background thread of this process for the
  length of a ``with`` block (a store object cannot be handed to another process);
* :func:`start_daemon` mounts a store URL in a detached child process and returns once
  the mount is ready (what ``kvfs mount`` runs);
* :func:`unmount` unmounts a kvfs mount, also when the daemon died, and nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
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
from urllib.parse import unquote

from ..errors import BackendError, MissingExtraError
from ..store import KeyValueStore
from ..url import mask_url, open_store, parse_store_url
from .errors import FuseUnavailableError, MountError
from .logs import log_to, stream_handler, syslog_handler
from .options import MountOptions

log = logging.getLogger("kvfs.mount")

#: Seconds to wait for a new mount to become ready.
READY_TIMEOUT = 60.0
#: The kernel's read-ahead for a mount, in KiB, raised from its 128 KiB default where
#: permitted (root): sequential reads then come as 1 MiB requests (``MAX_WRITE`` pages),
#: several in flight at once, instead of one round trip per 128 KiB.
READ_AHEAD_KB = 4096
#: The filesystem type of a kvfs mount in ``/proc/self/mountinfo`` (FUSE, subtype kvfs).
MOUNT_TYPE = "fuse.kvfs"


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


def _mount_path(mountpoint: str) -> str:
    # A dead FUSE mount cannot be resolved (stat fails): its absolute path is its name.
    return os.path.realpath(os.path.abspath(mountpoint)) if os.path.exists(mountpoint) else os.path.abspath(mountpoint)


def is_mounted(mountpoint: str) -> bool:
    """Whether *mountpoint* is a mount point, also one whose daemon died."""
    path = _mount_path(mountpoint)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as mounts:
            return any(_unescape_mount_field(line.split(" ")[1]) == path for line in mounts if " " in line)
    except OSError:
        return os.path.ismount(path)


def mount_type(mountpoint: str) -> str | None:
    """The filesystem type mounted at *mountpoint* (:data:`MOUNT_TYPE` for kvfs), or None.

    Read from ``/proc/self/mountinfo``, where the last of several mounts at one point is
    the one in use. Raises ``OSError`` when that file cannot be read.
    """
    path = _mount_path(mountpoint)
    found = None
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mounts:
        for line in mounts:
            fields, _, rest = line.partition(" - ")
            names = fields.split(" ")
            if len(names) > 4 and _unescape_mount_field(names[4]) == path:
                found = rest.split(" ", 1)[0]
    return found


def unmount(mountpoint: str, *, lazy: bool = False) -> None:
    """Unmount the kvfs mount at *mountpoint* (``fusermount3 -u``).

    A mount whose daemon died ("Transport endpoint is not connected") is unmounted
    too. With *lazy*, a busy mount is detached now and goes away when no longer used.
    Raises :class:`MountError` when *mountpoint* is not mounted, is another kind of
    mount (a tmpfs, another FUSE filesystem: left alone, even for root), or cannot be
    unmounted (busy).
    """
    path = _mount_path(mountpoint)
    try:
        kind = mount_type(path)
    except OSError as error:
        raise MountError(errno.EIO, f"cannot tell what is mounted at {mountpoint}: {error.strerror}") from None
    if kind is None:
        raise MountError(errno.EINVAL, f"{mountpoint} is not mounted")
    if kind != MOUNT_TYPE:
        raise MountError(errno.EINVAL, f"{mountpoint} is not a kvfs mount (it is {kind}); left mounted")
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

    Blocks; *on_ready* is called (from a FUSE thread) once the mount is usable. Returns
    when the mount is unmounted, also when a signal (Ctrl-C, ``SIGTERM``) ended it:
    libfuse unmounts then. Raises :class:`MountError` for an unusable mount point (one
    inside a directory the store keeps its data in, see :func:`check_outside_store`), a
    store that cannot list its keys (``supports_listing`` False: a directory could not
    be shown) or a mount that failed, and :class:`~kvfs.mount.errors.FuseUnavailableError`
    when FUSE is missing.
    """
    if not store.supports_listing:
        raise MountError(errno.EOPNOTSUPP, f"{store!r} cannot list its keys, so it cannot be mounted")
    options = options or MountOptions()
    check_fuse()
    check_outside_store(store, mountpoint)
    path = check_mountpoint(mountpoint)
    from .binding import mfusepy
    from .fuselog import route_libfuse_messages, take_last_error

    libfuse = getattr(mfusepy, "_libfuse", None)
    if libfuse is not None:
        route_libfuse_messages(libfuse)
    take_last_error()  # what an earlier mount on this thread left
    served = threading.Event()

    def ready() -> None:
        # Called during the kernel's INIT, before its reply: the mount is listed, and
        # the reply (max_readahead, see init_with_config) no longer lowers what is set here.
        served.set()
        raise_read_ahead(path)
        if on_ready is not None:
            on_ready()

    queue = None
    if options.write_back:
        store, queue = _write_back(store, options, name)
    try:
        _serve(store, path, mountpoint, options, name, served, ready, queue)
    finally:
        if queue is not None:
            left = queue.status()["pending"]
            queue.close()  # what is not stored yet stays in the journal, for the next mount
            if left:
                log.warning("%d change(s) not stored yet stay in the journal %s", left, queue.journal.directory)


def _write_back(store: KeyValueStore, options: MountOptions, name: str) -> tuple[KeyValueStore, Any]:
    """*store* behind a write-back queue and its journal (replaying what an earlier mount left)."""
    from .journal import Journal
    from .pending import PendingStore
    from .writeback import WriteBack

    if not store.allows_key_and_prefix:
        raise MountError(
            errno.EINVAL,
            f"--write-back is for object stores and databases, not {type(store).__name__} "
            "(a local directory is written at local speed already)",
        )
    identity = name if name != "kvfs" else repr(store)
    journal = Journal(options.journal_dir or default_journal_dir(identity), sync=options.journal_fsync)
    queue = WriteBack(store, journal, options.transfers, delay=options.write_back_delay)
    return PendingStore(store, queue), queue


def default_journal_dir(identity: str) -> str:
    """The journal of a store named *identity* (its URL, credentials masked), one per store."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    digest = hashlib.sha256(identity.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(cache, "kvfs", "journal", digest)


def _serve(
    store: KeyValueStore,
    path: str,
    mountpoint: str,
    options: MountOptions,
    name: str,
    served: threading.Event,
    ready: Callable[[], None],
    queue: Any,
) -> None:
    from .binding import KvfsFUSE
    from .control import ControlServer
    from .fuselog import take_last_error
    from .operations import KvfsOperations

    if options.coordinate:
        from .locks import CoordinatedOperations  # flock and fcntl locks held in the engine

        operations: KvfsOperations = CoordinatedOperations(store, options, ready)
    else:
        operations = KvfsOperations(store, options, ready)  # locks stay the kernel's
    coordination = _coordination(operations, options, queue)

    def status() -> dict[str, Any]:
        answer = {"mountpoint": path, "store": name, "pid": os.getpid(), **operations.status()}
        if queue is not None:
            answer["mode"] = "write-back"
            answer["write_back"] = queue.status() | {"journal": queue.journal.directory}
        if coordination is not None:
            answer["coordination"] = _coordination_status(coordination)
        return answer

    control = ControlServer(path, {"status": status})
    try:
        control.start()
    except OSError as error:  # kvfs status will not work; the mount does
        log.warning("no control socket for %s (kvfs status will not answer): %s", path, error)
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
        # libfuse's loop reports the signal that stopped it as an error (fuse_main's 8)
        # after unmounting: the end of a mount that was served is no failure.
        if not served.is_set() or is_mounted(path):
            reason = take_last_error() or f"libfuse error {error}"
            raise MountError(errno.EIO, f"mounting {mountpoint} failed: {reason}") from None
        log.info("stopped by a signal: %s is unmounted", path)
    finally:
        control.close()
        if coordination is not None:
            coordination.stop()
            coordination.coordinator.close()


def _coordination(operations: Any, options: MountOptions, queue: Any = None) -> Any:
    """Join the coordination engine of ``options.coordinate`` (None without one).

    Subscribing does not wait for the engine: an unreachable one is logged and
    retried by the coordinator, and the mount lives on its timeouts meanwhile. With a
    write-back *queue*, changes are announced once uploaded, not when journaled.
    """
    if not options.coordinate:
        return None
    if not options.coordinate_store:
        raise MountError(errno.EINVAL, "--coordinate needs the store's URL (coordinate_store) to name its channel")
    from ..coordination import open_coordinator
    from .coordination import MountCoordination

    try:
        coordinator = open_coordinator(options.coordinate)
    except ValueError as error:
        raise MountError(errno.EINVAL, str(error)) from None
    when_stored = None if queue is None else queue.when_stored
    coordination = MountCoordination(coordinator, options.coordinate_store, operations.cache_callbacks(), when_stored)
    coordination.start()
    operations.coordination = coordination
    if queue is not None:
        coordination.announce_journaled(queue.replayed)  # an earlier mount left them unannounced
    return coordination


def _coordination_status(coordination: Any) -> dict[str, Any]:
    extra = {"channel": coordination.channel, "changes_applied": coordination.changes_applied}
    return dataclasses.asdict(coordination.status()) | extra | {"resets": coordination.resets}


def _data_locations(store: KeyValueStore) -> list[tuple[str, bool]]:
    """The local paths *store* (or a store it wraps) keeps its data in, each with
    whether it is a directory: a filesystem store's root, an SQLite database file."""
    from ..fs import FilesystemStore

    found: list[tuple[str, bool]] = []
    pending, seen = [store], set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        # Decorators keep the wrapped store in _dstore; a CacheDecorator its cache too.
        attributes = getattr(current, "__dict__", {})
        pending.extend(
            inner for inner in (attributes.get("_dstore"), attributes.get("cache")) if isinstance(inner, KeyValueStore)
        )
        if isinstance(current, FilesystemStore):
            found.append((os.path.realpath(current.root), True))
        bind = attributes.get("bind")
        if getattr(getattr(bind, "dialect", None), "name", None) == "sqlite":
            database = getattr(getattr(bind, "url", None), "database", None)
            if database and database != ":memory:" and not database.startswith("file:"):
                found.append((os.path.realpath(database), False))
    return found


def _url_data_locations(url: str) -> list[tuple[str, bool]]:
    """What :func:`_data_locations` finds, read from a store URL before it is opened."""
    try:
        parsed = parse_store_url(url)
    except ValueError:
        return []  # opening the store reports it
    path = unquote(parsed.parts.path)
    if parsed.scheme == "file" and path:
        return [(os.path.realpath(path), True)]
    database = path[1:]  # sqlite:///relative.db, sqlite:////absolute.db
    if parsed.scheme == "sqlite" and database not in ("", ":memory:"):
        return [(os.path.realpath(database), False)]
    return []


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(os.path.join(directory, ""))


def check_outside_store(store: KeyValueStore | str, mountpoint: str) -> None:
    """Raise :class:`MountError` when *mountpoint* and the store's local data overlap.

    *store* is a store or a store URL (checked before the store is opened, which may
    create its directory or database). A mount point inside a filesystem store's root
    (the store itself included) would show the mount inside itself (``find`` would
    never end), and a root or an SQLite file inside the mount point would be written
    through the mount that needs it.
    """
    path = os.path.realpath(mountpoint)
    locations = _url_data_locations(store) if isinstance(store, str) else _data_locations(store)
    for location, is_directory in locations:
        if is_directory and _within(path, location):
            raise MountError(errno.EINVAL, f"mount point {mountpoint} is inside the store's directory {location}")
        if _within(location, path):
            what = "directory" if is_directory else "database"
            raise MountError(errno.EINVAL, f"the store's {what} {location} is inside the mount point {mountpoint}")


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

#: What the daemon runs. Its command line holds this, the descriptor it reports on and
#: the mount point (so ``ps`` shows which mount it serves), never the store URL: every
#: local user can read a command line.
_DAEMON_CODE = "from kvfs.mount.mounter import _daemon; _daemon()"


def start_daemon(
    url: str,
    mountpoint: str,
    options: MountOptions | None = None,
    *,
    check: bool = True,
    log_level: str = "WARNING",
    log_file: str | None = None,
) -> int:
    """Mount the store at *url* in a detached child process; return its process id.

    Returns once the mount is ready. The child gets its settings (the URL, passwords
    and all) through a pipe on its standard input, not on its command line. It opens
    the store and, unless *check* is false, runs its
    :meth:`~kvfs.store.KeyValueStore.check` before mounting anything. It logs to
    *log_file*, else to syslog once the mount is ready (before, its messages are
    reported here), at *log_level* (``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``).

    Raises, with the child's reason: ``ValueError`` for a bad URL,
    :class:`~kvfs.errors.MissingExtraError` for a missing package,
    :class:`~kvfs.errors.BackendError` (or another ``OSError``) when the store cannot
    be opened or fails its check, and :class:`MountError` when the mount fails.
    """
    options = options or MountOptions()
    check_fuse()
    path = check_mountpoint(mountpoint)
    check_outside_store(url, path)
    if log_file is not None:
        log_file = os.path.abspath(log_file)
        errors = open(log_file, "ab")  # noqa: SIM115 - handed to the child
    else:
        errors = tempfile.TemporaryFile()  # noqa: SIM115 - read back on failure
    settings = {
        "url": url,
        "mountpoint": path,
        "options": asdict(options),
        "check": check,
        "log_level": log_level,
        "log_file": log_file,
    }
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", _DAEMON_CODE, str(write_end), path],
            pass_fds=(write_end,),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=errors,
            start_new_session=True,
        )
    finally:
        os.close(write_end)
    try:
        _send_settings(child, settings)
        report = _read_report(read_end, child)
    finally:
        os.close(read_end)
    try:
        if report.get("ready"):
            return child.pid
        _wait_for_end(child)  # nothing of a failed mount outlives the call
        if not report:
            errors.seek(0)
            lines = [line for line in errors.read().decode(errors="replace").splitlines() if line.strip()]
            message = lines[-1] if lines else f"the mount process exited with status {child.returncode}"
            raise MountError(errno.EIO, message)
        raise _failure(report)
    finally:
        errors.close()


def _wait_for_end(child: subprocess.Popen[bytes]) -> None:
    try:
        child.wait(30)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _send_settings(child: subprocess.Popen[bytes], settings: dict[str, Any]) -> None:
    assert child.stdin is not None
    try:
        child.stdin.write(json.dumps(settings).encode())
        child.stdin.close()
    except BrokenPipeError:  # the child died at once; its standard error says why
        pass


def _read_report(fd: int, child: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The child's report (one JSON line), or {} if it ended without one."""
    deadline = time.monotonic() + READY_TIMEOUT
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            child.kill()
            return {"kind": "mount", "errno": errno.ETIMEDOUT, "message": "the mount did not become ready in time"}
        readable, _, _ = select.select([fd], [], [], min(left, 1.0))
        if readable:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
    try:
        report = json.loads(data.decode(errors="replace")) if data.strip() else {}
    except ValueError:
        report = {}
    return report if isinstance(report, dict) else {}


def _describe_failure(error: BaseException) -> dict[str, Any]:
    """*error* as the daemon reports it, for :func:`_failure` to raise again in the parent."""
    if isinstance(error, MissingExtraError):
        return {"kind": "missing-extra", "package": error.package, "extra": error.extra}
    if isinstance(error, ValueError):
        return {"kind": "value", "message": str(error)}
    kind = "mount" if isinstance(error, (MountError, FuseUnavailableError)) else "store"
    if isinstance(error, OSError):
        message = error.strerror if error.strerror and error.errno is not None else str(error)
        return {"kind": kind, "errno": error.errno, "message": message}
    return {"kind": kind, "errno": None, "message": f"{type(error).__name__}: {error}"}


def _failure(report: dict[str, Any]) -> Exception:
    kind, code, message = report.get("kind"), report.get("errno"), str(report.get("message", ""))
    if kind == "missing-extra":
        return MissingExtraError(str(report.get("package")), str(report.get("extra")))
    if kind == "value":
        return ValueError(message)
    if kind == "store":
        return BackendError(code, message) if isinstance(code, int) else BackendError(message)
    return MountError(code if isinstance(code, int) else errno.EIO, message)


def _daemon() -> None:
    """The body of the child :func:`start_daemon` starts (not a public entry point)."""
    report_fd = int(sys.argv[1])
    settings = json.loads(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    level = settings["log_level"]
    # Standard error is the log file, or until the mount is ready the parent's
    # temporary file, read back if the child ends without a report.
    log_to(stream_handler(sys.stderr), level)

    def report(message: dict[str, Any]) -> None:
        nonlocal report_fd
        if report_fd >= 0:
            os.write(report_fd, json.dumps(message).encode() + b"\n")
            os.close(report_fd)
            report_fd = -1

    def ready() -> None:
        report({"ready": True})
        if settings["log_file"] is None:
            # Nobody reads the parent's temporary file any more: the log goes to
            # syslog, anything else written to standard error nowhere.
            log_to(syslog_handler(), level)
            os.dup2(devnull, 2)

    url = settings["url"]
    try:
        store = open_store(url)
    except Exception as error:  # reported to the parent, which raises it again
        report(_describe_failure(error))
        sys.exit(1)
    try:
        if settings.get("check", True):
            store.check()
        os.chdir("/")
        log.info("serving %s at %s", mask_url(url), settings["mountpoint"])
        options = settings["options"]
        if options.get("coordinate") and not options.get("coordinate_store"):
            options["coordinate_store"] = url  # every host's mount of the URL shares its channel
        serve(store, settings["mountpoint"], MountOptions(**options), on_ready=ready, name=_fsname(url))
    except Exception as error:
        if report_fd < 0:  # the mount was ready: only the log can tell
            log.error("the mount of %s at %s failed: %s", mask_url(url), settings["mountpoint"], error)
        report(_describe_failure(error))
        sys.exit(1)
    finally:
        store.close()


def _fsname(url: str) -> str:
    """The source shown by ``mount``/``df``: the URL without credentials or secrets."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        url = f"{scheme}://{rest.split('@', 1)[1]}"
    return f"kvfs:{mask_url(url)}"


__all__ = [
    "MountError",
    "FuseUnavailableError",
    "serve",
    "mounted",
    "start_daemon",
    "unmount",
    "is_mounted",
    "mount_type",
    "MOUNT_TYPE",
    "check_fuse",
    "check_mountpoint",
    "check_outside_store",
]
