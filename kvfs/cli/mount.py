"""``kvfs mount`` and ``kvfs unmount``: the FUSE view of a store from the command line."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import click

from ..coordination.leases import DEFAULT_LEASE_LIFETIME
from ..mount.errors import FuseUnavailableError
from ..mount.logs import log_to, stream_handler
from ..mount.mounter import (
    MountError,
    _fsname,
    check_fuse,
    check_mountpoint,
    check_outside_store,
    serve,
    start_daemon,
)
from ..mount.mounter import unmount as unmount_mountpoint
from ..mount.options import (
    DEFAULT_CACHE_SIZE,
    DEFAULT_READ_CACHE_SIZE,
    DEFAULT_TRANSFERS,
    DEFAULT_WRITE_BACK_DELAY,
    MountOptions,
)
from ..url import mask_url
from .errors import EXIT_USAGE, CliError, describe
from .output import format_size, note, progress_bar
from .stores import open_error, open_url

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


class _Size(click.ParamType):
    """A byte count: ``1048576``, ``512K``, ``256M``, ``1G`` (powers of 1024)."""

    name = "size"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*", str(value).upper())
        if match is None:
            self.fail(f"{value!r} is not a size like 256M or 1G", param, ctx)
        return int(match.group(1)) * _UNITS[match.group(2)]


class _Octal(click.ParamType):
    name = "octal"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return int(str(value), 8)
        except ValueError:
            self.fail(f"{value!r} is not an octal number like 022", param, ctx)


@click.command()
@click.argument("store_url")
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--read-only", is_flag=True, help="Refuse every change (EROFS).")
@click.option("--uid", type=click.IntRange(min=0), help="Owner shown for files [default: your uid].")
@click.option("--gid", type=click.IntRange(min=0), help="Group shown for files [default: your gid].")
@click.option(
    "--umask", type=_Octal(), default="022", show_default=True, help="Masks the shown modes 666 (files) and 777 (directories)."
)
@click.option(
    "--attr-timeout",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds file attributes are cached; changes made elsewhere show after this.",
)
@click.option(
    "--listing-timeout",
    type=click.FloatRange(min=0),
    default=1.0,
    show_default=True,
    help="Seconds directory listings are cached; new or deleted keys show after this.",
)
@click.option(
    "--cache-size",
    type=_Size(),
    default=DEFAULT_CACHE_SIZE,
    help="Memory for files being written (all together) before they spill to temporary files, e.g. 256M [default: 256M].",
)
@click.option(
    "--read-cache-size",
    type=_Size(),
    default=DEFAULT_READ_CACHE_SIZE,
    help="On a remote store (S3, GCS, ...): local copies of files written or read, served without "
    "downloading again while the store's size and time are unchanged; 0 turns it off [default: 1G].",
)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Directory for temporary files [default: $TMPDIR].")
@click.option(
    "--metadata-heads",
    is_flag=True,
    help="On S3, whose listings carry no modes, owners or times: one HEAD per listed file (in parallel), "
    "so exact modes and times show right after a mount, as s3fs does (rsync -a needs them).",
)
@click.option(
    "--write-back",
    is_flag=True,
    help="close() returns once the file is safe in a local journal; uploads run in the background, "
    "TRANSFERS at a time, and resume after a crash at the next mount. For object stores and databases.",
)
@click.option(
    "--journal-dir",
    type=click.Path(file_okay=False),
    help="With --write-back: where the journal of pending changes lives [default: one directory per store "
    "under $XDG_CACHE_HOME/kvfs/journal].",
)
@click.option(
    "--transfers", type=click.IntRange(min=1), default=DEFAULT_TRANSFERS, show_default=True,
    help="With --write-back: uploads in flight at once.",
)
@click.option(
    "--write-back-delay", type=click.FloatRange(min=0), default=DEFAULT_WRITE_BACK_DELAY, show_default=True,
    metavar="SECONDS",
    help="With --write-back: uploads start once no new change has come for 0.1 s, so a burst of writes "
    "(tar -x, cp -r) runs at local speed; while changes keep coming, a change waits at most this long. "
    "fsync and unmount send at once; 0 sends every change at once.",
)
@click.option(
    "--no-journal-fsync",
    is_flag=True,
    help="With --write-back: do not fsync the journal at each close (faster; a power cut may lose the last "
    "changes, a killed mount loses none).",
)
@click.option(
    "--coordinate",
    metavar="URL",
    help="Coordination engine shared by every host mounting the same STORE_URL (redis://... or "
    "postgresql://...): changes show on the other mounts at once; flock and fcntl locks hold on every host.",
)
@click.option(
    "--lock-lifetime",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="With --coordinate: the lease of each lock, renewed every third of it while the mount lives; "
    f"the locks of a mount that died free themselves after that long [default: {DEFAULT_LEASE_LIFETIME:g}].",
)
@click.option(
    "--allow-other",
    is_flag=True,
    help="Let other users use the mount (needs user_allow_other for non-root). The kernel checks the shown modes; "
    "a store that keeps no modes shows every file as 666 minus --umask, so a warning says what all users can read.",
)
@click.option(
    "--no-check", is_flag=True, help="Mount without first checking that the store answers (and exists)."
)
@click.option("--foreground", is_flag=True, help="Stay attached and log to stderr until unmounted (Ctrl-C unmounts).")
@click.option("--log-level", type=click.Choice(_LOG_LEVELS, case_sensitive=False), default="WARNING", show_default=True, help="What to log.")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Where the background mount logs [default: syslog].")
def mount(
    store_url: str,
    mountpoint: str,
    read_only: bool,
    uid: int | None,
    gid: int | None,
    umask: int,
    attr_timeout: float,
    listing_timeout: float,
    cache_size: int,
    read_cache_size: int,
    cache_dir: str | None,
    metadata_heads: bool,
    allow_other: bool,
    write_back: bool,
    journal_dir: str | None,
    transfers: int,
    write_back_delay: float,
    no_journal_fsync: bool,
    coordinate: str | None,
    lock_lifetime: float | None,
    no_check: bool,
    foreground: bool,
    log_level: str,
    log_file: str | None,
) -> None:
    """Show the store at STORE_URL as a directory tree at MOUNTPOINT.

    Returns once the mount is ready and leaves it running in the background; `kvfs
    unmount MOUNTPOINT` ends it. MOUNTPOINT must be an empty directory, outside the
    store's own directory. The store is checked first (one request): a store that
    cannot be reached or does not exist (a missing bucket or directory) is not mounted.

    Exit codes: 0 mounted (or, with --foreground, unmounted again), 1 the store or the
    mount failed, 2 bad URL or option, 4 a package the store needs is missing.
    """
    if lock_lifetime is not None and not coordinate:
        raise CliError("--lock-lifetime needs --coordinate (without it, locks stay with the kernel)", EXIT_USAGE)
    try:
        options = MountOptions(
            read_only=read_only,
            uid=uid,
            gid=gid,
            umask=umask,
            attr_timeout=attr_timeout,
            listing_timeout=listing_timeout,
            cache_size=cache_size,
            read_cache_size=read_cache_size,
            cache_dir=cache_dir,
            metadata_heads=metadata_heads,
            allow_other=allow_other,
            write_back=write_back,
            journal_dir=journal_dir,
            journal_fsync=not no_journal_fsync,
            transfers=transfers,
            write_back_delay=write_back_delay,
            coordinate=coordinate,
            coordinate_store=store_url if coordinate else None,
            lock_lifetime=DEFAULT_LEASE_LIFETIME if lock_lifetime is None else lock_lifetime,
        )
    except ValueError as error:
        raise CliError(_one_line(error), EXIT_USAGE) from None
    try:
        if allow_other:
            _warn_if_all_can_read(store_url, mountpoint, options)
        if foreground:
            _serve_foreground(store_url, mountpoint, options, log_level, check=not no_check)
        else:
            start_daemon(store_url, mountpoint, options, check=not no_check, log_level=log_level, log_file=log_file)
    except (MountError, FuseUnavailableError) as error:
        raise CliError(_one_line(error)) from None
    except CliError:
        raise
    except Exception as error:  # opening or checking the store: the URL's fault or the store's
        raise open_error(error, store_url) from None


def _warn_if_all_can_read(url: str, mountpoint: str, options: MountOptions) -> None:
    """Warn that ``--allow-other`` opens every file to every user, on a store that keeps no modes."""
    file_mode = 0o666 & ~options.umask
    if not file_mode & 0o004:
        return  # --umask hides the files from other users anyway
    from ..url import open_store

    try:
        with open_store(url) as store:
            if store.keeps_metadata and (store.listing_has_metadata or options.metadata_heads):
                return  # real modes, enforced per file
            writable = store.supports_writes and not options.read_only
            kept = store.keeps_metadata  # S3: kept, but listings do not show them
    except Exception:  # noqa: BLE001 - the mount itself reports a store it cannot open
        return
    rights = "read, change and delete" if writable and file_mode & 0o002 else "read"
    if kept:
        problem, lasting = "shows no file modes without --metadata-heads", "--metadata-heads shows the kept modes"
    else:
        problem, lasting = "keeps no file modes", "a chmod through the mount lasts only until it is unmounted"
    click.echo(
        f"Warning: {mask_url(url)} {problem}, so with --allow-other every user of this machine can "
        f"{rights} every file in {mountpoint} (each shows as mode {file_mode:03o}); {lasting}. "
        "--umask 077 keeps the files to you.",
        err=True,
    )


def _serve_foreground(url: str, mountpoint: str, options: MountOptions, log_level: str, *, check: bool) -> None:
    log_to(stream_handler(), log_level)
    check_fuse()
    check_mountpoint(mountpoint)
    check_outside_store(url, mountpoint)
    store = open_url(url)
    with store:
        if check:
            try:
                store.check()
            except Exception as error:
                raise describe(error, url) from None
        logging.getLogger("kvfs.mount").info("serving %s at %s", mask_url(url), mountpoint)
        serve(store, mountpoint, options, name=_fsname(url))


def _one_line(error: BaseException) -> str:
    text = error.strerror if isinstance(error, OSError) and error.strerror and len(error.args) == 2 else str(error)
    return " ".join(str(text).split()) or type(error).__name__


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON, for scripts.")
def status(mountpoint: str, as_json: bool) -> None:
    """Show how the kvfs mount at MOUNTPOINT is doing.

    Open files, staged and cached bytes, whether the store is failing, and on a
    write-back mount the changes not yet stored (pending, in flight, failed, bytes left),
    on a coordinated mount the locks it holds.
    Asks the mount's process through its control socket (only the user who mounted, or
    root). Exit 1 if no kvfs mount of this user answers at MOUNTPOINT.
    """
    from ..mount.control import query

    try:
        answer = query(mountpoint)
    except OSError as error:
        raise CliError(_one_line(error)) from None
    if as_json:
        click.echo(json.dumps(answer, indent=2, sort_keys=True))
        return
    for line in describe_status(answer):
        click.echo(line)


def _drain(mountpoint: str, interval: float = 0.5) -> None:
    """Wait until a write-back mount at *mountpoint* has stored every change (progress on stderr)."""
    import time

    from ..mount.control import query

    try:
        queue = query(mountpoint).get("write_back")
    except OSError:
        return  # not a running kvfs mount of ours: unmount says what it is
    if not queue or not queue["pending"]:
        return
    bar = progress_bar("uploading", queue["bytes_left"], queue["pending"])
    first_left, first_pending, reported = queue["bytes_left"], queue["pending"], 0
    warned = False
    try:
        while queue and queue["pending"]:
            if bar is not None:
                bar.bytes_moved(max(0, first_left - queue["bytes_left"] - reported))
                reported = max(reported, first_left - queue["bytes_left"])
            if queue["failed"] and not warned:
                warned = True
                failure = queue["failures"][0]
                note(
                    f"kvfs unmount: {queue['failed']} change(s) keep failing ({failure['kind']} {failure['key']}: "
                    f"{failure['error']}); still trying. Ctrl-C, then --lazy, leaves them in the journal."
                )
            time.sleep(interval)
            queue = query(mountpoint).get("write_back")
    finally:
        if bar is not None:
            bar.close()
    note(f"kvfs unmount: {first_pending} change(s) stored")


def describe_status(answer: dict[str, Any]) -> list[str]:
    """The lines ``kvfs status`` prints for a mount's *answer*."""
    cache = answer.get("read_cache") or {}
    lines = [
        f"mount:        {answer.get('mountpoint')} ({answer.get('store')}, pid {answer.get('pid')})",
        f"mode:         {answer.get('mode')}",
        f"open files:   {answer.get('open_files', 0)} ({answer.get('open_handles', 0)} handles, "
        f"{answer.get('unsaved_files', 0)} with unsaved changes)",
        f"staged:       {format_size(answer.get('staged_memory_bytes', 0), True)} in memory "
        f"(limit {format_size(answer.get('staged_memory_limit', 0), True)})",
        f"read cache:   {format_size(cache.get('in_memory_bytes', 0), True)} in memory, "
        f"{format_size(cache.get('on_disk_bytes', 0), True)} on disk (limit {format_size(cache.get('limit', 0), True)})",
    ]
    failing = answer.get("store_failing") or {}
    lines.append(
        "store:        " + ("answering" if not failing else "FAILING: " + ", ".join(f"{kind} ({count} failed)" for kind, count in failing.items()))
    )
    locks = answer.get("locks")
    if locks is not None:  # a coordinated mount: the locks it holds in the engine
        waiting = answer.get("lock_requests_waiting", 0)
        lines.append(f"locks:        {len(locks)} held across hosts, {waiting} request(s) waiting")
        for lock in locks:
            lost = "" if lock.get("held", True) else " (lease lost)"
            lines.append(f"  {lock['mode']} {lock['kind']} {lock['key']}{lost}")
    queue = answer.get("write_back")
    if queue:
        lines.append(
            f"write-back:   {queue['pending']} pending, {queue['in_flight']} in flight, {queue['failed']} failed, "
            f"{format_size(queue['bytes_left'], True)} left"
            + (", held back while writes continue" if queue.get("held") else "")
        )
        for failure in queue.get("failures", []):
            lines.append(f"  failed: {failure['kind']} {failure['key']} ({failure['attempts']} attempts): {failure['error']}")
    return lines


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--lazy", is_flag=True, help="Detach now even if busy; it goes away once no longer used.")
def unmount(mountpoint: str, lazy: bool) -> None:
    """Unmount the kvfs mount at MOUNTPOINT (also one whose process died).

    On a write-back mount it first waits, with progress, until every change is in the
    store; with --lazy it unmounts at once and what is not stored yet stays in the
    journal, uploaded by the next mount of the store. Anything else mounted there (a
    tmpfs, another FUSE filesystem) is left alone: exit 1.
    """
    if not lazy:
        _drain(mountpoint)
    try:
        unmount_mountpoint(mountpoint, lazy=lazy)
    except OSError as error:
        raise CliError(_one_line(error)) from None
