"""The verbs that move values between stores: cp and sync (see :mod:`kvfs.transfer`)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import click

from ..errors import KeyNotFoundError
from ..store import KeyValueStore
from ..transfer import (
    DEFAULT_JOBS,
    Compare,
    TransferPlan,
    TransferReport,
    check_options,
    decide,
    run_transfer,
    select,
)
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    CliError,
    describe,
    display_url,
    reporting,
)
from .output import format_size, note, progress_bar
from .stores import open_url


def _common_options(function):  # type: ignore[no-untyped-def]
    """The options cp and sync share."""
    for option in reversed(
        [
            click.option(
                "-p",
                "--prefix",
                default="",
                metavar="PREFIX",
                help="Only keys starting with PREFIX (default: every key).",
            ),
            click.option(
                "-c",
                "--checksum",
                is_flag=True,
                help="Compare the content of keys of equal size (reads both), not only sizes.",
            ),
            click.option("-n", "--dry-run", is_flag=True, help="Print what would be done; change nothing."),
            click.option(
                "-j",
                "--jobs",
                default=DEFAULT_JOBS,
                show_default=True,
                type=click.IntRange(1, 256),
                help="Keys transferred in parallel.",
            ),
        ]
    ):
        function = option(function)
    return function


@click.command("cp")
@click.argument("source", metavar="SRC_URL")
@click.argument("dest", metavar="DST_URL")
@click.argument("keys", metavar="[KEY]...", nargs=-1)
@_common_options
@click.option("-f", "--force", is_flag=True, help="Copy even keys the destination has with the same size.")
def cp(
    source: str,
    dest: str,
    keys: tuple[str, ...],
    prefix: str,
    checksum: bool,
    dry_run: bool,
    jobs: int,
    force: bool,
) -> None:
    """Copy KEYs (or every key under --prefix, or the whole store) from SRC_URL to DST_URL.

    Keys keep their names. Values are streamed, several at a time (--jobs), with a
    progress bar on a terminal. A key the destination already has with the same size
    (with --checksum: the same content) is skipped, so a copy that was interrupted can
    simply be run again; --force copies every key. Each key is written atomically: an
    interrupted copy leaves no partial value. A key that fails does not stop the others;
    they are listed at the end (exit 1, or 3 if the only failures are missing keys).

    \b
    Examples:
      kvfs cp ./photos s3://bucket/photos               # the whole store
      kvfs cp ./photos s3://bucket/photos --prefix 2024/
      kvfs cp s3://bucket/photos ./restore 2024/cat.jpg 2024/dog.jpg
    """
    if keys and prefix:
        raise CliError("give KEYs or --prefix, not both", EXIT_USAGE)
    compare: Compare = "never" if force else "checksum" if checksum else "size"
    _transfer(
        "cp",
        source,
        dest,
        keys=list(keys) or None,
        prefix=prefix,
        compare=compare,
        delete=False,
        dry_run=dry_run,
        jobs=jobs,
    )


@click.command("sync")
@click.argument("source", metavar="SRC_URL")
@click.argument("dest", metavar="DST_URL")
@_common_options
@click.option(
    "--delete",
    is_flag=True,
    help="Delete destination keys (under --prefix) that the source lacks, after every copy succeeded.",
)
def sync(source: str, dest: str, prefix: str, checksum: bool, dry_run: bool, jobs: int, delete: bool) -> None:
    """Make DST_URL hold the keys of SRC_URL (under --prefix): copy what is missing or differs.

    A key is copied when the destination lacks it or has it with another size (with
    --checksum: other content). With --delete, destination keys the source lacks are
    deleted, but only once every copy of this run has succeeded; a source with no keys
    is refused (exit 3) so a mistyped URL cannot empty the destination. --dry-run prints
    the plan and changes nothing. Rerun an interrupted sync to finish it: what already
    arrived is skipped.

    \b
    Examples:
      kvfs sync ./site s3://bucket/site --delete
      kvfs sync --dry-run --delete s3://bucket/site ./mirror
      kvfs sync --checksum sqlite:///old.db postgresql://user@db/blobs
    """
    _transfer(
        "sync",
        source,
        dest,
        keys=None,
        prefix=prefix,
        compare="checksum" if checksum else "size",
        delete=delete,
        dry_run=dry_run,
        jobs=jobs,
    )


def _transfer(
    verb: str,
    source_url: str,
    dest_url: str,
    *,
    keys: Sequence[str] | None,
    prefix: str,
    compare: Compare,
    delete: bool,
    dry_run: bool,
    jobs: int,
) -> None:
    check_options(keys=keys, compare=compare, delete=delete)
    source = open_url(source_url)
    with source:
        dest = open_url(dest_url)
        with dest:
            plan = _plan(
                source,
                dest,
                source_url,
                dest_url,
                keys=keys,
                prefix=prefix,
                compare=compare,
                delete=delete,
                jobs=jobs,
            )
            if dry_run:
                _print_plan(plan)
                if plan.missing:
                    raise CliError(_missing_message(plan.missing, source_url), EXIT_NOT_FOUND)
                return
            report, seconds = _run(verb, source, dest, plan, jobs)
    _summarise(report, seconds, plan, source_url, dest_url)


def _plan(
    source: KeyValueStore,
    dest: KeyValueStore,
    source_url: str,
    dest_url: str,
    *,
    keys: Sequence[str] | None,
    prefix: str,
    compare: Compare,
    delete: bool,
    jobs: int,
) -> TransferPlan:
    with reporting(source_url, prefix or None):
        wanted, missing = select(source, keys=keys, prefix=prefix, jobs=jobs)
    if not wanted and keys is None:
        where = f"under {prefix!r} " if prefix else ""
        raise CliError(f"nothing to copy: no keys {where}in {display_url(source_url)}", EXIT_NOT_FOUND)
    present = []
    if compare != "never" or delete:
        with reporting(dest_url, prefix or None):
            named = None if keys is None else [info.key for info in wanted]
            present, _ = select(dest, keys=named, prefix=prefix, jobs=jobs)
    # Checksums read values of both stores; a failure there is retried by the copy.
    return decide(source, dest, wanted, present, compare=compare, delete=delete, missing=missing, jobs=jobs)


def _print_plan(plan: TransferPlan) -> None:
    for info in sorted(plan.copy, key=lambda info: info.key):
        click.echo(f"copy    {info.key}  ({format_size(info.size)} bytes)")
    for key in plan.delete:
        click.echo(f"delete  {key}")
    for key in plan.missing:
        click.echo(f"missing {key}")
    click.echo(
        f"dry run: would copy {len(plan.copy)} key(s) ({format_size(plan.bytes_to_copy, human=True)}), "
        f"skip {len(plan.skip)}, delete {len(plan.delete)}"
    )


def _run(
    verb: str, source: KeyValueStore, dest: KeyValueStore, plan: TransferPlan, jobs: int
) -> tuple[TransferReport, float]:
    """Run *plan* with a progress bar where wanted: the report and the seconds it took."""
    bar = progress_bar(f"kvfs {verb}", plan.bytes_to_copy, len(plan.copy))
    started = time.monotonic()
    try:
        report = run_transfer(source, dest, plan, jobs=jobs, progress=bar)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        raise CliError("interrupted; run the same command again to copy the rest", EXIT_INTERRUPTED) from None
    if bar is not None:
        bar.close()
    return report, time.monotonic() - started


def _summarise(
    report: TransferReport, seconds: float, plan: TransferPlan, source_url: str, dest_url: str
) -> None:
    """Print what was done (unless --quiet) and every failure; raise if anything failed."""
    rate = ""
    if report.bytes_copied and seconds > 0:
        rate = f", {format_size(int(report.bytes_copied / seconds), human=True)}/s"
    deleted = f", deleted {len(report.deleted)}" if plan.delete else ""
    note(
        f"copied {len(report.copied)} key(s) ({format_size(report.bytes_copied, human=True)}) "
        f"in {seconds:.1f} s{rate}, skipped {report.skipped}{deleted}"
    )
    if not report.failed:
        return
    for key, error in sorted(report.failed.items()):
        url = source_url if isinstance(error, KeyNotFoundError) else None
        click.echo(f"  failed: {describe(error, url, key).message}", err=True)
    attempted = len(plan.copy) + len(plan.missing) + len(plan.delete)
    message = f"{len(report.failed)} of {attempted} key(s) failed"
    if report.deletions_held_back:
        message += f"; {report.deletions_held_back} extra key(s) in {display_url(dest_url)} were not deleted"
    only_missing = all(isinstance(error, KeyNotFoundError) for error in report.failed.values())
    raise CliError(message, EXIT_NOT_FOUND if only_missing else EXIT_FAILED)


def _missing_message(missing: Sequence[str], source_url: str) -> str:
    shown = ", ".join(repr(key) for key in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return f"key(s) not found in {display_url(source_url)}: {shown}"


__all__ = ["cp", "sync"]
