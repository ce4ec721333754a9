"""The ``spmcli`` command group: global options, error handling and exit codes.

Exit codes: 0 success; 1 anomalies found (``detect --fail-on-anomaly``); 2 usage
error; 3 one or more inputs could not be processed; 130 interrupted (SIGINT,
Ctrl-C); 143 terminated (SIGTERM). Errors are one line on stderr starting with
``Error:``; ``-v`` adds the traceback. Warnings are one line starting with
``Warning:`` (none with ``-q``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator

import click
from threadpoolctl import threadpool_limits

from ._version import __version__
from .batch import Stopped
from .errors import SpmcliError

__all__ = ["EXIT_ANOMALY", "EXIT_INPUT_ERROR", "EXIT_INTERRUPTED", "EXIT_TERMINATED", "cli", "main"]

EXIT_ANOMALY = 1
EXIT_USAGE = 2
EXIT_INPUT_ERROR = 3
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143

# Command name -> module in spmcli.commands; each module defines ``command``.
# Imported only when used, so `spmcli --help` stays fast.
COMMAND_MODULES = {
    "learn-dict": "learn_dict",
    "reconstruct": "reconstruct",
    "inpaint": "inpaint",
    "tv-denoise": "tv_denoise",
    "detect": "detect",
    "report": "report",
}


@contextlib.contextmanager
def _warnings_as_lines(ctx: click.Context) -> Iterator[None]:
    """Show each distinct warning of the library as one ``Warning:`` line (none with -q)."""
    shown: set[str] = set()

    def show(message: Warning | str, category: type, filename: str, lineno: int, *args: object) -> None:
        text = str(message)
        if text in shown or (ctx.obj or {}).get("quiet"):
            return
        shown.add(text)
        click.echo(f"Warning: {text}", err=True)

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        yield


@contextlib.contextmanager
def _sigterm_stops() -> Iterator[None]:
    """SIGTERM (what ``timeout`` and supervisors send) unwinds like Ctrl-C does,
    so atomic writes remove their temporary files."""

    def handler(number: int, frame: object) -> None:
        raise Stopped(number)

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class SpmcliGroup(click.Group):
    """A group that loads command modules lazily and turns failures into the
    documented one-line errors and exit codes."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [
            name
            for name, module in COMMAND_MODULES.items()
            if importlib.util.find_spec(f"spmcli.commands.{module}") is not None
        ]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMAND_MODULES.get(name)
        if module is None or importlib.util.find_spec(f"spmcli.commands.{module}") is None:
            return None
        return importlib.import_module(f"spmcli.commands.{module}").command

    def main(self, args: list[str] | None = None, *remaining: object, **options: object):  # type: ignore[override]
        # Kept for reports ("command_line"): the arguments as the shell passed them.
        self._arguments = list(sys.argv[1:] if args is None else args)
        return super().main(args, *remaining, **options)

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra):
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta["spmcli.argv"] = getattr(self, "_arguments", list(args))
        return ctx

    def invoke(self, ctx: click.Context):
        try:
            # The sparse core works on small blocks (a few hundred patches, 64x256
            # dictionaries) where BLAS threads cost far more than they give:
            # measured, learn-dict took 26 s with two OpenBLAS threads and 3.2 s with one.
            with threadpool_limits(limits=1, user_api="blas"), _warnings_as_lines(ctx), _sigterm_stops():
                return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except SpmcliError as error:
            _report(ctx, f"Error: {error}")
            ctx.exit(EXIT_INPUT_ERROR)
        except KeyboardInterrupt:
            _report(ctx, "Error: interrupted; no partial output files were left")
            ctx.exit(EXIT_INTERRUPTED)
        except Stopped as stop:
            name = signal.Signals(stop.signal_number).name
            _report(ctx, f"Error: stopped by {name}; no partial output files were left")
            ctx.exit(EXIT_TERMINATED if stop.signal_number == signal.SIGTERM else EXIT_INTERRUPTED)
        except MemoryError:
            _report(ctx, "Error: out of memory; try a larger --stride or smaller images")
            ctx.exit(EXIT_INPUT_ERROR)
        except Exception as error:  # the last line of defence: one clear line, never a bare traceback
            _report(ctx, f"Error: unexpected failure: {type(error).__name__}: {error} (run with -v for details)")
            ctx.exit(EXIT_INPUT_ERROR)


def _report(ctx: click.Context, message: str) -> None:
    options = ctx.find_root().obj or {}
    if options.get("verbose"):
        traceback.print_exc()
    click.echo(message, err=True)


@click.group(cls=SpmcliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="spmcli")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging; tracebacks with errors.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or summaries; errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """Sparse modeling for folders of images: learn patch dictionaries (K-SVD),
    denoise and reconstruct, inpaint, total-variation denoise, detect defects.

    IMAGES arguments take files, folders and quoted globs ("scans/*.png").

    \b
    Exit codes: 0 success, 1 anomalies found (detect --fail-on-anomaly),
    2 usage error, 3 some inputs could not be processed, 130 interrupted
    (Ctrl-C), 143 terminated (SIGTERM).
    """
    ctx.obj = {"verbose": verbose, "quiet": quiet and not verbose}
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="spmcli")
