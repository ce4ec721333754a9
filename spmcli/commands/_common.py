"""Pieces every command shares: options, progress bars, messages, batch failures,
and output paths."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from tqdm import tqdm

from ..errors import SpmcliError
from ..io.finding import find_images
from ..io.images import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS


def is_quiet(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("quiet"))


def is_verbose(ctx: click.Context) -> bool:
    return bool((ctx.find_root().obj or {}).get("verbose"))


def say(ctx: click.Context, message: str) -> None:
    """A summary or information line on stdout (silenced by -q)."""
    if not is_quiet(ctx):
        click.echo(message)


def progress_bar(
    ctx: click.Context, total: int | None, description: str, unit: str = "it", position: int | None = None
) -> tqdm:
    """A tqdm bar on stderr, shown only when stderr is a terminal and not -q."""
    disable = is_quiet(ctx) or not sys.stderr.isatty()
    return tqdm(
        total=total, desc=description, unit=unit, disable=disable, file=sys.stderr, leave=False, position=position
    )


def max_pixels_option(function: Callable) -> Callable:
    return click.option(
        "--max-pixels",
        type=click.IntRange(min=1),
        default=DEFAULT_MAX_PIXELS,
        show_default=True,
        help="Refuse images with more pixels than this (checked before decoding).",
    )(function)


def report_option(what: str) -> Callable[[Callable], Callable]:
    """``--report FILE.json``: the run's report (see README, "Reports"); ``what`` says what its records hold."""
    return click.option(
        "--report",
        "report_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=f"Write a JSON report: the settings and one record per input ({what}).",
    )


def reference_option(function: Callable) -> Callable:
    """``--reference``: the clean image (one input) or a folder of them matched by name."""
    return click.option(
        "--reference",
        type=click.Path(exists=True),
        default=None,
        help="Clean reference: a file (one input) or a folder holding images of the same names; PSNR and SSIM "
        "of each written output go in the summary and the report.",
    )(function)


def seed_option(function: Callable) -> Callable:
    return click.option(
        "--seed", type=int, default=0, show_default=True, help="Seed for every random choice (same seed, same output)."
    )(function)


def expand_images(arguments: tuple[str, ...], ctx: click.Context | None = None) -> list[Path]:
    """IMAGES arguments to paths; an argument matching nothing is a usage error.

    spmcli's own pictures (heatmaps, overlays, masks) found in folders or by
    patterns are left out, and a line says how many.
    """
    skipped: list[Path] = []
    try:
        found = find_images(arguments, skipped)
    except SpmcliError as error:
        raise click.BadParameter(str(error), param_hint="IMAGES") from None
    if skipped and ctx is not None:
        say(ctx, f"Left out {len(skipped)} file(s) written by spmcli (heatmaps, overlays, masks), e.g. {skipped[0]}")
    return found


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False


def _usable_folder(folder: Path, option: str, shown: str) -> None:
    """Create ``folder`` (with its parents) if missing and check that files can be
    written in it; a usage error naming ``option`` otherwise."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise click.BadParameter(f"{shown}: {ancestor} exists and is not a folder", param_hint=option)
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise click.BadParameter(
            f"{shown}: cannot write in folder {folder} ({error.strerror or error})", param_hint=option
        ) from None


def prepare_output_file(
    path: str | Path, option: str, *, extensions: tuple[str, ...] | None = None, inputs: list[Path] = ()
) -> Path:
    """Check an output file option before any work starts (the one rule for every output).

    The extension must be one of ``extensions``; the path must not be a folder
    nor one of the inputs; its folder is created if missing, and must be
    writable. Anything else is a usage error (exit 2) naming ``option``.
    """
    target = Path(path)
    if extensions is not None and target.suffix.lower() not in extensions:
        raise click.BadParameter(f"{path}: use the extension {' or '.join(extensions)}", param_hint=option)
    if target.is_dir():
        raise click.BadParameter(f"{path} is a folder; give a file name", param_hint=option)
    for source in inputs:
        if target.resolve() == source.resolve() or _same_file(target, source):
            raise click.BadParameter(f"{path} is an input file; refusing to overwrite it", param_hint=option)
    _usable_folder(target.parent if str(target.parent) else Path("."), option, str(path))
    return target


def prepare_output_dir(path: str | Path, option: str) -> Path:
    """Check an output folder option before any work starts: created if missing, writable."""
    folder = Path(path)
    _usable_folder(folder, option, str(path))
    return folder


def output_paths(
    inputs: list[Path], output: str | None, output_dir: str | None, suffix: str | None = None
) -> list[Path]:
    """Where each input's result goes: ``-o FILE`` for a single input, or
    ``--output-dir DIR`` keeping each input's file name (with ``suffix`` as its
    extension when given). Folders are created and checked before any work
    (:func:`prepare_output_file`); never an input file."""
    if (output is None) == (output_dir is None):
        raise click.UsageError("give exactly one of -o/--output FILE or --output-dir DIR")
    if output is not None:
        if len(inputs) != 1:
            raise click.UsageError(f"-o takes a single input, got {len(inputs)}; use --output-dir for a batch")
        return [prepare_output_file(output, "-o", extensions=IMAGE_EXTENSIONS, inputs=inputs)]
    folder = prepare_output_dir(output_dir, "--output-dir")
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


def check_reference(reference: str | None, inputs: list[Path]) -> None:
    """``--reference``: a file for a single input, a folder of same-named references for a batch."""
    if reference is not None and len(inputs) > 1 and not Path(reference).is_dir():
        raise click.BadParameter(
            f"{reference} is a file but there are {len(inputs)} inputs; give a folder of references matched by name",
            param_hint="--reference",
        )


def given(ctx: click.Context, name: str) -> bool:
    """Whether the option ``name`` was given on the command line (or by an environment variable)."""
    return ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT)


def refuse_unused(ctx: click.Context, names: list[str], reason: str) -> None:
    """A usage error when any option of ``names`` was given although ``reason`` makes it have no effect."""
    used = [name for name in names if given(ctx, name)]
    if used:
        flags = ", ".join("--" + name.replace("_", "-") for name in used)
        raise click.UsageError(f"{flags} {'has' if len(used) == 1 else 'have'} no effect {reason}")


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


def write_csv_report(path: str | Path, records: list[dict], fields: tuple[str, ...]) -> None:
    """Write records as CSV rows with ``fields`` as columns (empty cells for null), atomically."""
    import csv
    import io

    from ..io.atomic import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for record in records:
        writer.writerow({key: "" if record.get(key) is None else record[key] for key in fields})
    atomic_write_text(path, buffer.getvalue())
