"""``mount.kvfs``: the helper mount(8) runs for ``fuse.kvfs`` lines of ``/etc/fstab``.

mount(8) calls ``/sbin/mount.fuse.kvfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]``
(see "EXTERNAL HELPERS" in mount(8)). This module turns that call into ``kvfs mount
SOURCE MOUNTPOINT --option ...``: kvfs's own options are spelled as in ``kvfs mount``
(``read-cache-size=2G`` or ``read_cache_size=2G``), the generic options mount passes on
(``rw``, ``_netdev``, ``nofail``, ``noauto``, ``user``, ``defaults``, ...) are ignored,
``ro`` mounts read-only, and ``credentials=FILE`` reads ``KEY=VALUE`` lines into the
environment of the mount, so secrets never sit in the fstab line.

Exit status as mount(8) expects: 0 mounted, 1 bad invocation, 32 the mount failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import click

EXIT_USAGE = 1
EXIT_FAILED = 32

#: Options of mount(8) and of fstab that concern mount itself, not kvfs: ignored.
GENERIC_OPTIONS = frozenset(
    {
        "defaults", "rw", "auto", "noauto", "nofail", "_netdev", "user", "users", "nouser",
        "owner", "group", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "async",
        "atime", "noatime", "relatime", "norelatime", "strictatime", "nostrictatime",
        "lazytime", "nolazytime", "diratime", "nodiratime", "silent", "loud",
    }
)
#: Options that take a value, with the ``kvfs mount`` option each becomes.
VALUE_OPTIONS = {
    name: f"--{name}"
    for name in (
        "uid", "gid", "umask", "attr-timeout", "listing-timeout", "cache-size",
        "read-cache-size", "cache-dir", "log-level", "log-file",
    )
}
#: Options without a value, with the ``kvfs mount`` option each becomes.
FLAG_OPTIONS = {
    "ro": "--read-only",
    "read-only": "--read-only",
    "allow-other": "--allow-other",
    "metadata-heads": "--metadata-heads",
}


class HelperError(Exception):
    """A bad invocation: a one-line message and exit status 1."""


def read_credentials(path: str) -> dict[str, str]:
    """The ``KEY=VALUE`` lines of *path* (blank lines, ``#`` comments and ``export`` allowed).

    Values may be quoted with ``'`` or ``"``. Raises :class:`HelperError` for a file that
    cannot be read or a line that is not an assignment (naming the line, not its value).
    """
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.read().splitlines()
    except OSError as error:
        raise HelperError(f"cannot read credentials file {path}: {error.strerror or error}") from None
    values: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        text = text.removeprefix("export ").strip()
        name, equals, value = text.partition("=")
        name = name.strip()
        if not equals or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise HelperError(f"{path}, line {number}: expected NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def translate(options: Sequence[str], *, sloppy: bool = False) -> tuple[list[str], str | None]:
    """``kvfs mount`` arguments for mount(8)'s ``-o`` *options*, and the credentials file.

    Raises :class:`HelperError` for an option kvfs does not know (ignored when *sloppy*,
    mount's ``-s``) or one missing its value.
    """
    arguments: list[str] = []
    credentials: str | None = None
    for option in options:
        name, equals, value = option.partition("=")
        if name in GENERIC_OPTIONS or name.startswith("x-") or name in ("comment", "user"):
            continue  # mount's business (user=NAME is what mount passes for "user")
        spelled = name.replace("_", "-")
        if spelled == "credentials":
            if not value:
                raise HelperError("credentials= needs the path of a KEY=VALUE file")
            credentials = value
        elif spelled in FLAG_OPTIONS and not equals:
            arguments.append(FLAG_OPTIONS[spelled])
        elif spelled in VALUE_OPTIONS:
            if not equals or not value:
                raise HelperError(f"option {name} needs a value: {name}=...")
            arguments += [VALUE_OPTIONS[spelled], value]
        elif not sloppy:
            raise HelperError(f"unknown mount option {option!r} for fuse.kvfs")
    return arguments, credentials


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mount.kvfs",
        description="Mount a kvfs store (called by mount(8) for fuse.kvfs lines of /etc/fstab).",
    )
    parser.add_argument("source", help="the store URL (or directory)")
    parser.add_argument("mountpoint")
    parser.add_argument("-o", dest="options", action="append", default=[], help="comma-separated options")
    parser.add_argument("-t", dest="type", help="the filesystem type (fuse.kvfs)")
    parser.add_argument("-s", dest="sloppy", action="store_true", help="ignore unknown options")
    parser.add_argument("-f", dest="fake", action="store_true", help="do everything but mount")
    parser.add_argument("-n", dest="no_mtab", action="store_true", help="(ignored)")
    parser.add_argument("-v", dest="verbose", action="store_true", help="say what is run")
    parser.add_argument("-N", dest="namespace", help="(not supported)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the helper; returns the exit status (see the module's documentation)."""
    from .mount import mount as mount_command

    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return EXIT_USAGE if exit_.code else 0
    try:
        if args.namespace:
            raise HelperError("mount namespaces (-N) are not supported")
        options = [item for group in args.options for item in group.split(",") if item]
        arguments, credentials = translate(options, sloppy=args.sloppy)
        if credentials is not None:
            os.environ.update(read_credentials(credentials))
    except HelperError as error:
        print(f"mount.kvfs: {error}", file=sys.stderr)
        return EXIT_USAGE
    command = [args.source, args.mountpoint, *arguments]
    if args.verbose:
        print("mount.kvfs: kvfs mount " + " ".join(command), file=sys.stderr)
    if args.fake:
        return 0
    try:
        mount_command.main(command, prog_name="kvfs mount", standalone_mode=False)
    except click.UsageError as error:
        print(f"mount.kvfs: {error.format_message()}", file=sys.stderr)
        return EXIT_USAGE
    except click.ClickException as error:
        print(f"mount.kvfs: {error.format_message()}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def run() -> None:
    """The console script's entry point."""
    sys.exit(main())


__all__ = ["main", "run", "translate", "read_credentials", "GENERIC_OPTIONS"]
