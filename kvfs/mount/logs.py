"""Where a mount logs: standard error in the foreground, syslog (or a file) in the background.

Every handler set up here masks credentials: a URL's password and secret-looking query
values are shown as ``***`` whatever the message (see :func:`kvfs.url.mask_url`), so a
store error that quotes its URL never writes a password into a log.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
from typing import IO

from ..url import mask_url

#: Where the system logger listens on Linux.
SYSLOG_ADDRESS = "/dev/log"

#: What looks like a URL with a scheme in a log line (up to the next blank or quote).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")

#: The loggers a mount's handlers serve: kvfs's own at the chosen level, the rest
#: (client libraries, urllib3's pool warnings) at WARNING or above.
_KVFS_LOGGER = "kvfs"


def mask_secrets(text: str) -> str:
    """*text* with every URL in it masked as :func:`~kvfs.url.mask_url` masks one."""
    return _URL.sub(lambda match: mask_url(match.group(0)), text)


class MaskingFormatter(logging.Formatter):
    """A formatter whose output never holds a URL's password or secret parameters."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


def stream_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing masked lines with time and level to *stream* (stderr)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter("%(asctime)s kvfs[%(process)d] %(levelname)s %(message)s"))
    return handler


def syslog_handler(address: str = SYSLOG_ADDRESS) -> logging.Handler | None:
    """A handler sending masked messages to the system logger at *address* (a Unix socket).

    The facility is ``daemon`` and the tag ``kvfs[PID]``. None when there is no such
    socket (a container without a system logger): the caller then logs nowhere.
    """
    if not os.path.exists(address):
        return None
    try:
        handler = logging.handlers.SysLogHandler(address, facility=logging.handlers.SysLogHandler.LOG_DAEMON)
    except OSError:
        return None
    handler.ident = f"kvfs[{os.getpid()}]: "
    handler.setFormatter(MaskingFormatter("%(levelname)s %(message)s"))
    return handler


def log_to(handler: logging.Handler | None, level: str | int) -> None:
    """Send the mount's logs to *handler* alone (nowhere when None), kvfs's at *level*.

    Replaces the handlers set before (the daemon switches from standard error to
    syslog once its mount is ready). Other libraries' records are kept from WARNING on.
    """
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(number, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler if handler is not None else logging.NullHandler())
    root.setLevel(max(number, logging.WARNING))
    logging.getLogger(_KVFS_LOGGER).setLevel(number)


__all__ = ["MaskingFormatter", "SYSLOG_ADDRESS", "log_to", "mask_secrets", "stream_handler", "syslog_handler"]
