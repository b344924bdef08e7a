"""libfuse's own messages, sent to Python's logging instead of standard error.

libfuse prints its warnings and errors ("fuse: mountpoint is not empty") to standard
error. Routed through ``fuse_set_log_func`` they reach the mount's log (stderr in the
foreground, syslog in the background) under the logger ``kvfs.fuse``, the last error
of a failed mount can be told to the user (:func:`take_last_error`), and the warning
libfuse 3.14 prints on every mount about its own thread limit, which means nothing to
a user, is dropped.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading

log = logging.getLogger("kvfs.fuse")

# enum fuse_log_level: syslog's levels.
_LEVELS = {0: logging.CRITICAL, 1: logging.CRITICAL, 2: logging.CRITICAL, 3: logging.ERROR, 4: logging.WARNING}
#: Messages libfuse prints that say nothing to a user (libfuse 3.14's default thread limit).
_HARMLESS = ("Ignoring invalid max threads value",)
# void (*fuse_log_func_t)(enum fuse_log_level level, const char *fmt, va_list ap): a
# va_list parameter is a pointer on x86-64 and (passed by reference) on AArch64.
_LOG_FUNC = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)

_installed: object = None
_vsnprintf: object = None
_lock = threading.Lock()
_last = threading.local()


def _format(fmt: bytes, arguments: int | None) -> str:
    buffer = ctypes.create_string_buffer(1024)
    _vsnprintf(buffer, len(buffer), fmt, arguments)  # type: ignore[operator]
    return buffer.value.decode(errors="replace").strip()


def _receive(level: int, fmt: bytes | None, arguments: int | None) -> None:
    try:
        message = _format(fmt or b"", arguments).removeprefix("fuse: ")
        if not message or message.startswith(_HARMLESS):
            return
        number = _LEVELS.get(level, logging.INFO if level <= 6 else logging.DEBUG)
        if number >= logging.ERROR:
            _last.message = message
        log.log(number, "libfuse: %s", message)
    except Exception:  # never let an exception cross into C
        pass


def route_libfuse_messages(libfuse: ctypes.CDLL) -> bool:
    """Send *libfuse*'s messages to the ``kvfs.fuse`` logger; return whether it could.

    Done once per process; a libfuse without ``fuse_set_log_func`` (before 3.7) keeps
    printing to standard error.
    """
    global _installed, _vsnprintf
    with _lock:
        if _installed is not None:
            return True
        setter = getattr(libfuse, "fuse_set_log_func", None)
        library = ctypes.util.find_library("c")
        if setter is None or library is None:
            return False
        vsnprintf = ctypes.CDLL(library).vsnprintf
        vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]
        vsnprintf.restype = ctypes.c_int
        _vsnprintf = vsnprintf
        callback = _LOG_FUNC(_receive)
        setter.argtypes = [_LOG_FUNC]
        setter.restype = None
        setter(callback)
        _installed = callback  # kept alive for as long as libfuse may call it
        return True


def take_last_error() -> str | None:
    """The last error libfuse reported on this thread (then forgotten), or None."""
    message = getattr(_last, "message", None)
    _last.message = None
    return message


__all__ = ["route_libfuse_messages", "take_last_error"]
