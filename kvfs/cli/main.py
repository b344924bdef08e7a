"""The ``kvfs`` command: a click group of verbs, and how every failure becomes one line.

Exit codes are those of :mod:`kvfs.cli.errors`: 0 success, 1 failed operation, 2 usage
error, 3 key not found, 4 missing optional package, 130 interrupted.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import click

from .. import __version__
from .browse import cat, get, ls, put, rm, stat, url_command
from .errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MISSING_EXTRA,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    describe,
)
from .settings import Settings
from .transfers import cp, sync


class KvfsGroup(click.Group):
    """A click group whose failures end in one line on stderr and a documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (KeyboardInterrupt, EOFError, BrokenPipeError):
            raise  # click turns these into "Aborted" (exit 130 here) and a quiet exit 1
        except Exception as error:  # anything a verb did not report itself
            raise describe(error) from error

    def main(  # type: ignore[override]
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; exit (or, with *standalone_mode* False, return) its exit code."""
        settings = extra.pop("obj", None) or Settings()
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, obj=settings, **extra)
            code = result if isinstance(result, int) else EXIT_OK
        except click.UsageError as error:
            code = _report(error, settings, _usage_message(error))
        except CliError as error:
            code = _report(error, settings, error.format_message(), error.exit_code)
        except click.ClickException as error:
            code = _report(error, settings, error.format_message(), error.exit_code)
        except click.Abort as error:
            interrupted = isinstance(error.__cause__, KeyboardInterrupt)
            code = _report(
                error,
                settings,
                "interrupted" if interrupted else "aborted",
                EXIT_INTERRUPTED if interrupted else EXIT_FAILED,
            )
        if standalone_mode:
            sys.exit(code)
        return code


def _command_name(error: BaseException) -> str:
    context = getattr(error, "ctx", None) or click.get_current_context(silent=True)
    return context.command_path if context is not None else "kvfs"


def _usage_message(error: click.UsageError) -> str:
    hint = f" (see '{error.ctx.command_path} --help')" if error.ctx is not None else ""
    return f"{error.format_message()}{hint}"


def _report(error: BaseException, settings: Settings, message: str, code: int = EXIT_USAGE) -> int:
    """Print *message* as ``kvfs VERB: message`` (after a traceback with ``--debug``)."""
    if settings.debug:
        cause = error.__cause__ or error
        traceback.print_exception(type(cause), cause, cause.__traceback__, file=sys.stderr)
    name = settings.command_path or _command_name(error)
    click.echo(f"{name}: {message}", err=True)
    return code


@click.group(cls=KvfsGroup, context_settings={"max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show Python tracebacks for errors.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors (no progress, no summary).")
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Force the progress bar on or off (default: on when stderr is a terminal).",
)
@click.version_option(__version__, "--version", prog_name="kvfs", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool, progress: bool | None) -> None:
    """Browse any key-value store and move blobs between stores.

    A store is named by a URL: a directory path (or file:///path), memory://,
    sqlite:///file.db, postgresql://user@host/db, redis://host:port/db,
    s3://bucket/prefix or gs://bucket/prefix, with decorators and options as query
    parameters. Keys always come as separate arguments after the store URL:

    \b
      kvfs cat s3://bucket/photos 2024/cat.jpg
      kvfs cp ./photos s3://bucket/photos --prefix 2024/

    Exit codes: 0 success, 1 an operation failed, 2 usage error (bad option, key or
    URL), 3 key not found, 4 a package the store needs is missing, 130 interrupted.
    """
    settings = ctx.ensure_object(Settings)
    settings.debug = debug
    settings.quiet = quiet
    settings.progress = progress
    if ctx.invoked_subcommand:
        settings.command_path = f"{ctx.command_path} {ctx.invoked_subcommand}"


for command in (ls, cat, put, get, rm, stat, url_command, cp, sync):
    cli.add_command(command)


def _add_mount_commands() -> None:
    """Add ``mount``/``unmount`` from :mod:`kvfs.cli.mount` when that module exists.

    If it exists but cannot be imported (its FUSE package is missing), the verbs are
    still listed and explain what to install.
    """
    try:
        from . import mount as mount_module
    except ModuleNotFoundError as error:
        if error.name in (__package__ + ".mount",):
            return  # no mount module in this installation
        _add_unavailable(("mount", "unmount", "status"), error)
        return
    except ImportError as error:
        _add_unavailable(("mount", "unmount", "status"), error)
        return
    for name in ("mount", "unmount", "status"):
        command = getattr(mount_module, name, None)
        if isinstance(command, click.Command):
            cli.add_command(command, name)


def _add_unavailable(names: tuple[str, ...], problem: ImportError) -> None:
    for name in names:

        @click.command(
            name,
            help=f"Unavailable here: {problem}",
            context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        )
        def unavailable() -> None:
            raise CliError(str(problem), EXIT_MISSING_EXTRA)

        cli.add_command(unavailable, name)


_add_mount_commands()


def main(args: list[str] | None = None) -> None:
    """The console script ``kvfs``: run the command line and exit with its code."""
    cli.main(args, prog_name="kvfs")


if __name__ == "__main__":
    main()
