"""The verbs that look at or change single keys: ls, cat, put, get, rm, stat, url.

Every verb takes the store URL first and then keys (or a prefix) relative to that store:
``kvfs cat s3://bucket/photos 2024/cat.jpg`` reads the key ``2024/cat.jpg`` of the store
``s3://bucket/photos``. A URL never contains the key, so the same URL works for every
verb and keeps its query parameters (decorators, options).
"""

from __future__ import annotations

import os
import shutil
import sys

import click

from ..keys import SEPARATOR
from ..store import CHUNK_SIZE, LINK_SUFFIX, KeyInfo, KeyValueStore
from ..transfer import DEFAULT_JOBS, parallel_map, stat_keys, walk
from .errors import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    describe,
    display_url,
    reporting,
)
from .output import format_size, format_time, note
from .stores import open_url

#: Keys handed to one ``delete_many`` call by ``kvfs rm`` (S3's DeleteObjects limit).
_DELETE_BATCH = 1000

url_argument = click.argument("url", metavar="URL")


# ---------------------------------------------------------------------- ls


@click.command("ls")
@url_argument
@click.argument("prefix", default="", required=False)
@click.option("-r", "--recursive", is_flag=True, help="List every key below PREFIX, not one level.")
@click.option("-l", "--long", "long_format", is_flag=True, help="Show size and last-modified time.")
@click.option("-h", "--human-readable", "human", is_flag=True, help="With -l: sizes like 1.5K, 12M.")
def ls(url: str, prefix: str, recursive: bool, long_format: bool, human: bool) -> None:
    """List the keys of the store at URL, one level at a time.

    Keys are printed whole (relative to the store), directories (common prefixes) with a
    trailing '/', sorted. PREFIX is a key prefix; one that names a directory lists its
    contents, as if written with a trailing '/'. Exits with 3 if nothing starts with
    a non-empty PREFIX, and with 1 if the store is not there (a missing directory).

    \b
    Examples:
      kvfs ls ./data                        # the top level of a local directory store
      kvfs ls -lh s3://bucket/backups 2024/ # one level below 2024/, with sizes
      kvfs ls -r sqlite:///blobs.db         # every key
    """
    store = open_url(url)
    with store, reporting(url, prefix or None):
        level = _listing_prefix(store, prefix)
        if recursive:
            entries = walk(store, level) if long_format else [KeyInfo(key) for key in store.iter_keys(level)]
        else:
            entries = list(store.iter_level(level))
            if long_format and not store.listing_has_sizes:
                entries = _with_sizes(store, entries)
        entries.sort(key=lambda entry: entry.key)
        names = {entry.key for entry in entries}
        for entry in entries:
            name, link = _shown_name(entry, names)
            if long_format:
                size = "DIR" if entry.is_prefix else "LINK" if link else format_size(entry.size, human)
                if link:
                    name = f"{name} -> {store.readlink(name)}"
                click.echo(f"{size:>{6 if human else 12}}  {format_time(entry.last_modified):16}  {name}")
            else:
                click.echo(name)
        if not entries:
            store.check()  # an empty listing of a store that is not there (a missing directory) says so
        if not entries and prefix:
            raise CliError(f"nothing found under {prefix!r} in {display_url(url)}", EXIT_NOT_FOUND)


def _shown_name(entry: KeyInfo, names: set[str]) -> tuple[str, bool]:
    """The name ``ls`` prints for *entry*, and whether it is a symbolic link.

    A link ``x`` is kept as the key ``x.rclonelink`` (see ``KeyValueStore.symlink``);
    where a key ``x`` exists too, the value wins and the link shows under its key.
    """
    key = entry.key
    if entry.is_prefix or not key.endswith(LINK_SUFFIX) or len(key) == len(LINK_SUFFIX):
        return key, False
    name = key[: -len(LINK_SUFFIX)]
    if name in names or name.endswith(SEPARATOR):
        return key, False
    return name, True


def _listing_prefix(store: KeyValueStore, prefix: str) -> str:
    """The listing prefix for PREFIX: ``a/`` where PREFIX names the directory ``a``."""
    if not prefix or prefix.endswith(SEPARATOR):
        return prefix
    try:
        if store.has_directory(prefix):
            return prefix + SEPARATOR
    except ValueError:
        pass  # not a valid key (a partial component is fine): a plain prefix
    return prefix


def _with_sizes(store: KeyValueStore, entries: list[KeyInfo]) -> list[KeyInfo]:
    keys = [entry.key for entry in entries if not entry.is_prefix]
    found, _ = stat_keys(store, keys)
    return [entry for entry in entries if entry.is_prefix] + found


# ---------------------------------------------------------------------- cat, put, get


@click.command("cat")
@url_argument
@click.argument("keys", metavar="KEY...", nargs=-1, required=True)
def cat(url: str, keys: tuple[str, ...]) -> None:
    """Write the values of KEYs to standard output, unchanged (binary-safe), streamed.

    \b
    Examples:
      kvfs cat ./data notes/todo.txt
      kvfs cat s3://bucket/prefix images/logo.png > logo.png
    """
    out = sys.stdout.buffer
    store = open_url(url)
    with store:
        for key in keys:
            with reporting(url, key), store.open(key) as file:
                shutil.copyfileobj(file, out, CHUNK_SIZE)
        out.flush()


@click.command("put")
@url_argument
@click.argument("key")
@click.argument(
    "file",
    default="-",
    required=False,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=str),
)
def put(url: str, key: str, file: str) -> None:
    """Store FILE (or standard input, '-', the default) under KEY, streamed.

    The key is replaced atomically: readers see the old value or the new one.

    \b
    Examples:
      kvfs put ./data notes/todo.txt todo.txt
      tar c photos | kvfs put s3://bucket/backups photos.tar
    """
    store = open_url(url)
    with store, reporting(url, key):
        if file == "-":
            store.put_file(key, sys.stdin.buffer)
        else:
            store.put_file(key, file)


@click.command("get")
@url_argument
@click.argument("key")
@click.argument("file", required=False, type=click.Path(allow_dash=True, path_type=str))
def get(url: str, key: str, file: str | None) -> None:
    """Write the value of KEY to FILE ('-' for standard output).

    FILE defaults to the last component of KEY in the current directory; an existing
    directory receives that name. The file is written under a temporary name and renamed,
    and a missing key creates no file.

    \b
    Examples:
      kvfs get s3://bucket/photos 2024/cat.jpg          # writes ./cat.jpg
      kvfs get sqlite:///blobs.db report.pdf /tmp/r.pdf
    """
    name = key.rsplit(SEPARATOR, 1)[-1]
    target = file or name
    if target != "-" and os.path.isdir(target):
        target = os.path.join(target, name)
    store = open_url(url)
    with store, reporting(url, key):
        if target == "-":
            out = sys.stdout.buffer
            store.get_file(key, out)
            out.flush()
        else:
            store.get_file(key, target)


# ---------------------------------------------------------------------- rm


@click.command("rm")
@url_argument
@click.argument("keys", metavar="KEY...", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="Also delete every key below KEY/ (a directory).")
@click.option("-f", "--force", is_flag=True, help="Missing keys are not an error.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before a recursive delete.")
@click.option(
    "-j",
    "--jobs",
    default=DEFAULT_JOBS,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Deletions in parallel.",
)
def rm(url: str, keys: tuple[str, ...], recursive: bool, force: bool, yes: bool, jobs: int) -> None:
    """Delete KEYs from the store at URL.

    Every KEY is checked first: if one is missing, nothing is deleted (exit 3), unless
    -f is given. With -r, each KEY is a directory: the key KEY (if any) and every key below KEY/ are
    deleted, after a confirmation on a terminal; elsewhere (a script, a pipe) -r needs
    --yes (else exit 2).

    \b
    Examples:
      kvfs rm ./data notes/old.txt
      kvfs rm -r --yes s3://bucket/backups 2019
    """
    store = open_url(url)
    with store:
        targets: list[str] = []
        directories: list[str] = []
        for key in keys:
            with reporting(url, key):
                found = _deletion_targets(store, key, recursive, directories)
            if not found and not force:
                what = f"nothing found under {key!r}" if recursive else f"key not found: {key!r}"
                raise CliError(f"{what} in {display_url(url)}", EXIT_NOT_FOUND)
            targets.extend(found)
        if recursive and targets and not yes:
            _confirm(f"Delete {len(targets)} key(s) from {display_url(url)}?")
        failures = 0
        # delete_many is one request per 1,000 keys where the store can (S3); a batch that
        # fails is deleted again key by key, to say which keys could not be deleted.
        batches = [targets[start : start + _DELETE_BATCH] for start in range(0, len(targets), _DELETE_BATCH)]
        for batch, _, error in parallel_map(store.delete_many, batches, jobs):
            if error is None:
                continue
            for key, _, error in parallel_map(store.delete, batch, jobs):
                if error is not None:
                    failures += 1
                    click.echo(f"kvfs rm: {describe(error, url, key).message}", err=True)
        for directory in sorted(directories, key=len, reverse=True):
            with reporting(url, directory):
                store.delete_directory(directory)
        if failures:
            raise CliError(f"{failures} of {len(targets)} key(s) could not be deleted")
        if recursive:
            note(f"deleted {len(targets)} key(s)")


def _deletion_targets(store: KeyValueStore, key: str, recursive: bool, directories: list[str]) -> list[str]:
    """The keys ``rm`` deletes for KEY; with *recursive*, the directories to remove join *directories*."""
    if not recursive:
        return [key] if key in store else []
    key = key.rstrip(SEPARATOR)
    found = [key] if key in store else []
    if not store.supports_directories:
        return found + sorted(store.iter_keys(key + SEPARATOR))
    pending = [key + SEPARATOR]
    while pending:
        level = pending.pop()
        for entry in store.iter_level(level):
            if entry.is_prefix:
                pending.append(entry.key)
            else:
                found.append(entry.key)
        directories.append(level[:-1])
    return found


def _confirm(question: str) -> None:
    if not sys.stdin.isatty():
        raise CliError("refusing to delete without --yes: standard input is not a terminal", EXIT_USAGE)
    click.confirm(question, abort=True, err=True)


# ---------------------------------------------------------------------- stat, url


@click.command("stat")
@url_argument
@click.argument("key")
def stat(url: str, key: str) -> None:
    """Show the size and last-modified time of KEY, without reading its value.

    \b
    Example:
      kvfs stat s3://bucket/photos 2024/cat.jpg
    """
    store = open_url(url)
    with store, reporting(url, key):
        try:
            info = store.stat(key)
        except KeyError:
            if not store.has_directory(key):
                raise
            click.echo(f"key:      {key}{SEPARATOR}\ntype:     directory")
            return
        click.echo(f"key:      {info.key}\ntype:     value")
        click.echo(f"size:     {info.size} ({format_size(info.size, human=True)})")
        click.echo(f"modified: {format_time(info.last_modified, precise=True)}")


@click.command("url")
@url_argument
@click.argument("key")
def url_command(url: str, key: str) -> None:
    """Print a URL from which the value of KEY can be fetched (the store's url_for).

    Whether KEY exists is not checked. Stores that cannot give URLs fail with exit code 1.

    \b
    Examples:
      kvfs url ./data notes/todo.txt          # file:///.../data/notes/todo.txt
      kvfs url s3://bucket/photos cat.jpg     # a presigned https:// URL
    """
    store = open_url(url)
    with store, reporting(url, key):
        url_for = getattr(store, "url_for", None)
        try:
            if url_for is None:
                raise NotImplementedError
            click.echo(url_for(key))
        except NotImplementedError:
            raise CliError(f"{display_url(url)}: this store cannot give URLs for its keys") from None


__all__ = ["cat", "get", "ls", "put", "rm", "stat", "url_command"]
