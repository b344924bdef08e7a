"""How ``kvfs`` shows sizes, times, progress and notes."""

from __future__ import annotations

import datetime
import io
import os
import sys
import threading
from typing import Any

import click

from .settings import current_settings

_UNITS = "KMGTPE"


def format_size(size: int | None, human: bool = False) -> str:
    """*size* in bytes, or like ``ls -h`` (``999``, ``1.0K``, ``12M``) with *human*; ``-`` if unknown."""
    if size is None:
        return "-"
    if not human or size < 1024:
        return str(size)
    value = float(size)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    raise AssertionError("unreachable")


def format_time(timestamp: float | None, precise: bool = False) -> str:
    """A POSIX *timestamp* in local time: ``2024-05-01 12:34`` or, *precise*, ISO 8601."""
    if timestamp is None:
        return "-"
    moment = datetime.datetime.fromtimestamp(timestamp).astimezone()
    if precise:
        return moment.isoformat(timespec="seconds")
    return moment.strftime("%Y-%m-%d %H:%M")


def note(message: str) -> None:
    """Print *message* on standard error unless ``--quiet``."""
    if not current_settings().quiet:
        click.echo(message, err=True)


class ProgressBar:
    """A terminal progress bar (tqdm) for a transfer: bytes, rate, ETA and keys done.

    Implements :class:`kvfs.transfer.ProgressListener`; safe to call from several threads.
    """

    def __init__(self, label: str, total_bytes: int, total_keys: int) -> None:
        from tqdm import tqdm

        self._lock = threading.Lock()
        self._keys_done = 0
        self._total_keys = total_keys
        stream = sys.stderr
        width = _terminal_width(stream)
        self._bar: Any = tqdm(
            total=total_bytes or None,
            desc=label,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            dynamic_ncols=width is None,  # follow resizes of a real terminal
            ncols=width,
            mininterval=0.2,
            file=stream,
            postfix=self._keys_text(),
        )

    def _keys_text(self) -> str:
        return f"{self._keys_done}/{self._total_keys} keys"

    def bytes_moved(self, count: int) -> None:
        with self._lock:
            self._bar.update(count)

    def key_finished(self, key: str, error: BaseException | None) -> None:
        with self._lock:
            self._keys_done += 1
            self._bar.set_postfix_str(self._keys_text(), refresh=False)
            self._bar.update(0)  # redraw when the refresh interval has passed

    def close(self) -> None:
        with self._lock:
            self._bar.refresh()
            self._bar.close()


def _terminal_width(stream: Any) -> int | None:
    """None for a terminal that knows its width; else a width to use (a pty without a
    size reports 0 columns, and tqdm would draw nothing)."""
    try:
        if os.get_terminal_size(stream.fileno()).columns > 0:
            return None
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
    return 100


def progress_bar(label: str, total_bytes: int, total_keys: int) -> ProgressBar | None:
    """A :class:`ProgressBar` if one is wanted (a terminal, or ``--progress``), else None.

    Without the ``tqdm`` package (``pip install 'kvfs[cli]'``) there is no bar.
    """
    if not current_settings().show_progress() or total_keys == 0:
        return None
    try:
        return ProgressBar(label, total_bytes, total_keys)
    except ImportError:
        return None


__all__ = ["ProgressBar", "format_size", "format_time", "note", "progress_bar"]
