"""Pieces every command shares: options, progress bars, messages, batch failures,
and output paths."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ..cli import EXIT_INPUT_ERROR
from ..errors import SpmcliError
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, find_images


def is_quiet(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("quiet"))


def say(ctx: click.Context, message: str) -> None:
    """A summary or information line on stdout (silenced by -q)."""
    if not is_quiet(ctx):
        click.echo(message)


def progress_bar(ctx: click.Context, total: int | None, description: str, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr, shown only when stderr is a terminal and not -q."""
    disable = is_quiet(ctx) or not sys.stderr.isatty()
    return tqdm(total=total, desc=description, unit=unit, disable=disable, file=sys.stderr, leave=False)


def max_pixels_option(function: Callable) -> Callable:
    return click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_PIXELS,
        show_default=True,
        help="Refuse images with more pixels than this (checked before decoding).",
    )(function)


def seed_option(function: Callable) -> Callable:
    return click.option(
        "--seed", type=int, default=0, show_default=True, help="Seed for every random choice (same seed, same output)."
    )(function)


def expand_images(arguments: tuple[str, ...]) -> list[Path]:
    """IMAGES arguments to paths; an argument matching nothing is a usage error."""
    try:
        return find_images(arguments)
    except SpmcliError as error:
        raise click.BadParameter(str(error), param_hint="IMAGES") from None


class Batch:
    """Collects per-input failures: each is reported at once as one ``Error:``
    line, the rest of the batch goes on, and :meth:`finish` sums up."""

    def __init__(self, ctx: click.Context, n_inputs: int) -> None:
        self.ctx = ctx
        self.n_inputs = n_inputs
        self.failures: list[tuple[str, str]] = []

    def fail(self, path: str | Path, error: BaseException | str) -> None:
        if isinstance(error, SpmcliError):
            cause = error.message
            path = error.path or path
        else:
            cause = str(error)
        self.failures.append((str(path), cause))
        if (self.ctx.find_root().obj or {}).get("verbose") and isinstance(error, BaseException):
            import traceback

            traceback.print_exception(error)
        click.echo(f"Error: {path}: {cause}", err=True)

    def run(self, path: str | Path, action: Callable[[], Any]) -> Any:
        """Run ``action``; record a failure (and return None) on a user-facing error.
        ValueError from the numeric core is a problem with this input, too."""
        try:
            return action()
        except (SpmcliError, ValueError) as error:
            self.fail(path, error)
            return None
        except Exception as error:  # one input's surprise must not stop a cron batch
            self.fail(path, f"unexpected failure: {type(error).__name__}: {error} (run with -v for details)")
            if (self.ctx.find_root().obj or {}).get("verbose"):
                import traceback

                traceback.print_exception(error)
            return None

    def failure_records(self) -> list[dict[str, str]]:
        """The failures as report entries: ``{"input": path, "error": cause}``."""
        return [{"input": path, "error": cause} for path, cause in self.failures]

    def finish(self) -> None:
        """Print the failure summary and exit 3 when anything failed."""
        if not self.failures:
            return
        click.echo(f"Error: {len(self.failures)} of {self.n_inputs} input(s) could not be processed:", err=True)
        for path, cause in self.failures:
            click.echo(f"  {path}: {cause}", err=True)
        self.ctx.exit(EXIT_INPUT_ERROR)


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def check_new_output(output: str | Path, inputs: list[Path], option: str) -> None:
    """Refuse, as a usage error, an output image path with an unknown extension,
    in a missing folder, or that is one of the inputs."""
    target = Path(output)
    if target.suffix.lower() not in IMAGE_EXTENSIONS:
        raise click.BadParameter(f"{output}: use an image extension ({', '.join(IMAGE_EXTENSIONS)})", param_hint=option)
    if not (target.parent if str(target.parent) else Path(".")).is_dir():
        raise click.BadParameter(f"{output}: folder {target.parent} does not exist", param_hint=option)
    for source in inputs:
        if target.resolve() == source.resolve() or _same_file(target, source):
            raise click.BadParameter(f"{output} is an input file; refusing to overwrite it", param_hint=option)


def output_paths(
    inputs: list[Path], output: str | None, output_dir: str | None, suffix: str | None = None
) -> list[Path]:
    """Where each input's result goes: ``-o FILE`` for a single input, or
    ``--output-dir DIR`` (created if missing) keeping each input's file name
    (with ``suffix`` as its extension when given). Never an input file."""
    if (output is None) == (output_dir is None):
        raise click.UsageError("give exactly one of -o/--output FILE or --output-dir DIR")
    if output is not None:
        if len(inputs) != 1:
            raise click.UsageError(f"-o takes a single input, got {len(inputs)}; use --output-dir for a batch")
        if Path(output).suffix.lower() not in IMAGE_EXTENSIONS:
            raise click.BadParameter(
                f"{output}: use an image extension ({', '.join(IMAGE_EXTENSIONS)})", param_hint="-o"
            )
        targets = [Path(output)]
    else:
        folder = Path(output_dir)
        if folder.exists() and not folder.is_dir():
            raise click.BadParameter(f"{folder}: exists and is not a folder", param_hint="--output-dir")
        folder.mkdir(parents=True, exist_ok=True)
        targets = [folder / (path.stem + (suffix or path.suffix)) for path in inputs]
        seen: dict[Path, Path] = {}
        for source, target in zip(inputs, targets, strict=True):
            if target in seen:
                raise click.UsageError(f"{seen[target]} and {source} would both be written to {target}")
            seen[target] = source
    resolved_inputs = {path.resolve() for path in inputs}
    for source, target in zip(inputs, targets, strict=True):
        if target.resolve() in resolved_inputs or any(_same_file(target, path) for path in inputs):
            raise click.UsageError(f"output {target} is an input file ({source}); refusing to overwrite it")
    return targets


class AutoOrNumber(click.ParamType):
    """``auto`` or a finite number, at least ``minimum`` (above it when ``strict``)
    and at most ``maximum``."""

    def __init__(self, name: str, minimum: float, strict: bool, maximum: float = float("inf"), hint: str = "") -> None:
        self.name = name
        self.minimum = minimum
        self.strict = strict
        self.maximum = maximum
        self.hint = hint

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float | str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                number = float(value)
            except ValueError:
                self.fail(f"{value!r} is neither 'auto' nor a number", param, ctx)
        in_range = number > self.minimum if self.strict else number >= self.minimum
        if not in_range or number == float("inf"):
            self.fail(f"{value!r} must be a finite number {'>' if self.strict else '>='} {self.minimum:g}", param, ctx)
        if number > self.maximum:
            self.fail(f"{value!r} is above {self.maximum:g}{self.hint}", param, ctx)
        return number


def SigmaType() -> AutoOrNumber:
    """``auto`` or a non-negative noise standard deviation on the 0..255 scale."""
    return AutoOrNumber(
        "SIGMA|auto", 0.0, strict=False, maximum=255.0, hint=": sigma is on the 0..255 scale for every image type"
    )


def find_reference(reference: str | Path | None, source: Path) -> Path | None:
    """The clean image to compare ``source``'s result with: the ``--reference``
    file itself, or in a ``--reference`` folder the file of the same name (else
    the same stem with any image extension)."""
    if reference is None:
        return None
    location = Path(reference)
    if not location.is_dir():
        return location
    same_name = location / source.name
    if same_name.is_file():
        return same_name
    for extension in IMAGE_EXTENSIONS:
        candidate = location / (source.stem + extension)
        if candidate.is_file():
            return candidate
    raise SpmcliError(f"no reference image named {source.name} (or {source.stem}.*) in {location}", source)


def write_json_report(path: str | Path, payload: dict) -> None:
    """Write a JSON report atomically (non-finite floats become null)."""
    import json
    import math

    from ..io.atomic import atomic_write_text

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: clean(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(item) for item in value]
        if isinstance(value, Path):
            return str(value)
        return value

    atomic_write_text(path, json.dumps(clean(payload), indent=2) + "\n")
