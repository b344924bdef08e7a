"""The control socket of a running mount: ``kvfs status MNT`` asks it how it is doing.

Each mount listens on a UNIX socket named after its mount point, in a directory only
its user can enter (``/run/kvfs`` for root, ``$XDG_RUNTIME_DIR/kvfs`` or
``/tmp/kvfs-UID`` otherwise). A client sends one JSON line (``{"command": "status"}``)
and reads one JSON line back. The socket file is removed when the mount ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

from .errors import MountError

log = logging.getLogger("kvfs.mount")

#: Longest request or answer, in bytes.
_LIMIT = 1 << 20


def socket_directory(uid: int | None = None) -> str:
    """The directory of the control sockets of the mounts of user *uid* (default: ours)."""
    uid = os.geteuid() if uid is None else uid
    if uid == 0:
        return "/run/kvfs"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "kvfs")
    return f"/tmp/kvfs-{uid}"


def socket_path(mountpoint: str, uid: int | None = None) -> str:
    """The control socket of the mount at *mountpoint* (its real path names it)."""
    real = os.path.realpath(mountpoint)
    name = hashlib.sha256(real.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    return os.path.join(socket_directory(uid), f"{name}.sock")


class ControlServer:
    """Answers the requests of ``kvfs status`` for the mount at *mountpoint*.

    *handlers* maps each command name to a function returning a JSON-able dict.
    Runs in a daemon thread from :meth:`start` until :meth:`close`.
    """

    def __init__(self, mountpoint: str, handlers: dict[str, Callable[[], dict[str, Any]]]) -> None:
        self.path = socket_path(mountpoint)
        self._handlers = handlers
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen (a stale socket of a dead mount at the same place is replaced)."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        info = os.stat(directory)
        if info.st_uid != os.geteuid() or info.st_mode & 0o077:
            raise MountError(f"{directory} must belong to uid {os.geteuid()} and be private (mode 700)")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        os.chmod(self.path, 0o600)
        server.listen(8)
        self._socket = server
        self._thread = threading.Thread(target=self._serve, name="kvfs-control", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._socket is not None
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return  # closed
            with connection:
                try:
                    connection.settimeout(5)
                    self._answer(connection)
                except Exception as error:  # a client that went away, a handler that failed
                    log.debug("control request failed: %s", error)

    def _answer(self, connection: socket.socket) -> None:
        request = json.loads(_read_line(connection))
        command = request.get("command") if isinstance(request, dict) else None
        handler = self._handlers.get(command) if isinstance(command, str) else None
        if handler is None:
            answer: dict[str, Any] = {"error": f"unknown command {command!r}; known: {sorted(self._handlers)}"}
        else:
            try:
                answer = handler()
            except Exception as error:
                answer = {"error": f"{type(error).__name__}: {error}"}
        connection.sendall(json.dumps(answer, default=str).encode() + b"\n")

    def close(self) -> None:
        """Stop answering and remove the socket."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
            self._socket.close()
            self._socket = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


def query(mountpoint: str, command: str = "status", timeout: float = 10.0) -> dict[str, Any]:
    """Ask the mount at *mountpoint* for *command*'s answer.

    Raises :class:`~kvfs.mount.errors.MountError` when no kvfs mount of this user
    answers there.
    """
    path = socket_path(mountpoint)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(timeout)
    try:
        try:
            client.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            raise MountError(f"{mountpoint} is not a running kvfs mount of this user (no control socket)") from None
        client.sendall(json.dumps({"command": command}).encode() + b"\n")
        answer = json.loads(_read_line(client))
    except (OSError, ValueError) as error:
        if isinstance(error, MountError):
            raise
        raise MountError(f"the mount at {mountpoint} did not answer: {error}") from None
    finally:
        client.close()
    if not isinstance(answer, dict):
        raise MountError(f"the mount at {mountpoint} gave a malformed answer")
    if "error" in answer:
        raise MountError(f"the mount at {mountpoint}: {answer['error']}")
    return answer


def _read_line(connection: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > _LIMIT:
            raise ValueError("message too long")
    return data


__all__ = ["ControlServer", "query", "socket_path", "socket_directory"]
