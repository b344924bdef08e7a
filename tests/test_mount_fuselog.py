"""libfuse's own messages go to Python's logging (kvfs.mount.fuselog), through the real libfuse3."""

from __future__ import annotations

import ctypes
import logging

import pytest
from mount_support import require_fuse


@pytest.fixture
def libfuse() -> ctypes.CDLL:
    require_fuse()
    from kvfs.mount.binding import mfusepy
    from kvfs.mount.fuselog import route_libfuse_messages

    library = mfusepy._libfuse
    if not hasattr(library, "fuse_log"):
        pytest.skip("libfuse before 3.7 has no fuse_log")
    assert route_libfuse_messages(library)
    return library


def test_errors_are_logged_and_kept_for_the_mount_error(libfuse: ctypes.CDLL, caplog: pytest.LogCaptureFixture) -> None:
    from kvfs.mount.fuselog import take_last_error

    take_last_error()
    with caplog.at_level(logging.DEBUG, logger="kvfs.fuse"):
        libfuse.fuse_log(3, b"fuse: bad mount point `%s': %s (%d)\n", b"/x/y", b"No such file", ctypes.c_int(42))
        libfuse.fuse_log(6, b"serving %d requests\n", ctypes.c_int(7))
    assert [(record.levelno, record.getMessage()) for record in caplog.records] == [
        (logging.ERROR, "libfuse: bad mount point `/x/y': No such file (42)"),
        (logging.INFO, "libfuse: serving 7 requests"),
    ]
    assert take_last_error() == "bad mount point `/x/y': No such file (42)"
    assert take_last_error() is None


def test_the_thread_limit_warning_of_libfuse_3_14_is_dropped(libfuse: ctypes.CDLL, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="kvfs.fuse"):
        libfuse.fuse_log(
            4, b"Ignoring invalid max threads value %u > max (%u).\n", ctypes.c_uint(4294967295), ctypes.c_uint(100000)
        )
    assert caplog.records == []
