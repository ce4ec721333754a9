"""The command-line side of the batch engine: ``--jobs``, ``--scheduler`` and
``--skip-existing``, progress bars, per-image lines, the report and the exit code.

Every batch command ends in :func:`run_batch`: options -> settings -> tasks ->
:func:`spmcli.batch.run_tasks` -> lines, report, exit code.
"""

from __future__ import annotations

import dataclasses
import datetime
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import click
from tqdm import tqdm

from .._version import __version__
from ..batch import BatchResult, Task, TaskFunction, run_tasks, usable_cores
from ..cli import EXIT_ANOMALY, EXIT_INPUT_ERROR, EXIT_INTERRUPTED, EXIT_TERMINATED
from ..io.images import probe_image
from ._common import is_quiet, is_verbose, progress_bar, say, write_json_report

REPORT_FORMAT = 2
SCHEDULER_VARIABLE = "SPMCLI_SCHEDULER"
# Share of the available memory --jobs auto lets the workers use together.
_MEMORY_SHARE = 0.8
# Resident memory of a worker before its image: Python, numpy, scipy, scikit-image
# (measured: 110 MB for spmcli on a 16 x 16 image).
_INTERPRETER_BYTES = 120e6


class JobsType(click.ParamType):
    """``auto`` or a positive number (of worker processes, or of threads per image)."""

    name = "N|auto"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int | str:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif str(value).strip().lower() == "auto":
            return "auto"
        else:
            try:
                number = int(str(value))
            except ValueError:
                self.fail(f"{value!r} is neither 'auto' nor a whole number", param, ctx)
        if number < 1:
            self.fail(f"{value!r} must be at least 1", param, ctx)
        return number


def batch_options(skip_existing: bool = True) -> Callable[[Callable], Callable]:
    """``--jobs``, ``--scheduler`` (and ``--skip-existing``) for a batch command."""

    def decorate(function: Callable) -> Callable:
        options = [
            click.option(
                "--jobs",
                type=JobsType(),
                default=1,
                show_default=True,
                help="Worker processes; 'auto': the usable cores, fewer if memory is short. "
                "Results are identical whatever the number.",
            ),
            click.option(
                "--scheduler",
                metavar="ADDRESS",
                envvar=SCHEDULER_VARIABLE,
                default=None,
                help=f"Run on this Dask distributed scheduler (e.g. tcp://10.0.0.5:8786; or set {SCHEDULER_VARIABLE}). "
                "Needs pip install 'spmcli[dask]'; inputs and outputs must be on storage the workers share.",
            ),
        ]
        if skip_existing:
            options.append(
                click.option(
                    "--skip-existing",
                    is_flag=True,
                    help="Skip inputs whose outputs already exist (outputs are only ever complete files): "
                    "resumes an interrupted batch.",
                )
            )
        for option in reversed(options):
            function = option(function)
        return function

    return decorate


def resolve_workers(
    ctx: click.Context, jobs: int | str, scheduler: str | None, inputs: list[Path], peak_bytes_per_pixel: float
) -> tuple[int, str | None]:
    """The worker count and scheduler to use; usage errors for impossible combinations."""
    if scheduler is not None:
        if ctx.get_parameter_source("jobs") not in (None, click.core.ParameterSource.DEFAULT):
            raise click.UsageError("give --jobs or --scheduler, not both (the cluster decides how many workers run)")
        try:
            import distributed  # noqa: F401  (imported here only to tell whether it is installed)
        except ImportError:
            raise click.UsageError("--scheduler needs Dask's distributed package: pip install 'spmcli[dask]'") from None
        return 1, scheduler
    if jobs != "auto":
        return int(jobs), None
    return auto_jobs(inputs, peak_bytes_per_pixel), None


def threads_per_image(workers: int, scheduler: str | None) -> int:
    """Threads one image may use: the usable cores the worker processes leave
    free (1 on a cluster, whose workers share their machines' cores)."""
    return 1 if scheduler is not None else max(1, usable_cores() // workers)


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def auto_jobs(inputs: list[Path], peak_bytes_per_pixel: float) -> int:
    """``--jobs auto``: the usable cores, bounded by the available memory over the
    peak memory of one worker on the largest input (pixels from the headers,
    times the command's measured peak bytes per pixel, plus the interpreter's 120 MB)."""
    cores = usable_cores()
    largest = 0
    for path in inputs:
        try:
            width, height = probe_image(path)
        except Exception:  # an unreadable input fails later with its own message
            continue
        largest = max(largest, width * height)
    available = _available_memory()
    if available is None or largest == 0:
        return max(1, min(cores, len(inputs)))
    per_worker = _INTERPRETER_BYTES + peak_bytes_per_pixel * largest
    return max(1, min(cores, len(inputs), int(_MEMORY_SHARE * available // per_worker)))


class StageBars:
    """One tqdm bar per stage the numeric core reports (``callback(stage, done, total)``),
    each closed when the next stage starts."""

    LABELS: ClassVar[dict[str, tuple[str, str]]] = {
        "train": ("K-SVD", "iter"),
        "code": ("coding", "patch"),
        "wiener": ("Wiener", "group"),
        "hard thresholding": ("hard thresholding", "group"),
        "collaborative": ("collaborative", "block"),
    }

    def __init__(self, ctx: click.Context) -> None:
        self.ctx, self.stage, self.bar, self.name = ctx, None, None, ""

    def for_input(self, name: str) -> StageBars:
        self.close()
        self.name, self.stage = name, None
        return self

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            label, unit = self.LABELS.get(stage, (stage, "step"))
            self.stage = stage
            self.bar = progress_bar(self.ctx, total, f"{label} {self.name}", unit=unit, position=1)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def image_tasks(inputs: list[Path], targets: list[Path]) -> list[Task]:
    """One task per input image writing one output image."""
    return [
        Task(index, str(path), str(target), (str(target),))
        for index, (path, target) in enumerate(zip(inputs, targets, strict=True))
    ]


def _clean(record: dict) -> dict:
    return {key: value for key, value in record.items() if key != "traceback"}


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).isoformat(timespec="milliseconds")


def command_line(ctx: click.Context) -> list[str]:
    """The arguments the program was run with (as the shell passed them)."""
    root = ctx.find_root()
    return ["spmcli", *root.meta.get("spmcli.argv", [])]


def build_report(
    ctx: click.Context,
    command: str,
    settings: Any,
    result: BatchResult,
    exit_code: int,
    scheduler: str | None,
    extra_header: dict | None = None,
    extra_counts: dict | None = None,
) -> dict:
    """The report every batch command writes: a header, then one record per input in input order."""
    settings_record = dataclasses.asdict(settings) if dataclasses.is_dataclass(settings) else dict(settings)
    # Fields that say how the work ran, not what it computed (such as threads
    # per image), belong with the workers: the settings stay the same for the
    # same output whatever --jobs.
    execution = {"workers": result.workers, "scheduler": scheduler}
    for item in dataclasses.fields(settings) if dataclasses.is_dataclass(settings) else ():
        if item.metadata.get("execution"):
            execution[item.name] = settings_record.pop(item.name)
    return {
        "report_format": REPORT_FORMAT,
        "spmcli_version": __version__,
        "command": command,
        "command_line": command_line(ctx),
        "settings": settings_record,
        **(extra_header or {}),
        "started": _timestamp(result.started),
        "finished": _timestamp(result.finished),
        "seconds": round(result.finished - result.started, 3),
        "execution": execution,
        "counts": {**result.counts, **(extra_counts or {})},
        "exit_code": exit_code,
        "records": [_clean(record) for record in result.records],
    }


def run_batch(
    ctx: click.Context,
    *,
    command: str,
    function: TaskFunction,
    tasks: list[Task],
    settings: Any,
    jobs: int,
    scheduler: str | None,
    skip_existing: bool = False,
    summary: Callable[[dict], str | None] | None = None,
    verb: str = "Processed",
    report_path: str | None = None,
    write_report: Callable[[str, dict], None] | None = None,
    extra_header: dict | None = None,
    on_record: Callable[[dict], None] | None = None,
    extra_counts: Callable[[BatchResult], dict] | None = None,
    anomalies: Callable[[BatchResult], int] | None = None,
    final_note: Callable[[BatchResult], str] | None = None,
    decided: dict[int, dict] | None = None,
    on_finish: Callable[[BatchResult, int], None] | None = None,
) -> BatchResult:
    """Run the tasks, print as they finish, write the report, and exit with the documented code.

    Per input: an ``Error: <file>: <cause>`` line for a failure, one ``Warning:``
    line per distinct warning, and (unless ``-q``) the command's ``summary``
    line. At the end: a summary line, the list of failures, and the exit code
    (143/130 when stopped by SIGTERM/SIGINT, else 3 when an input failed, else
    1 when ``anomalies`` counts any and ``--fail-on-anomaly`` asked for it).
    ``decided`` records are not run (see :func:`spmcli.batch.run_tasks`);
    ``on_finish(result, exit_code)`` runs before the report is written.
    """
    tqdm.monitor_interval = 0  # no monitor thread: worker processes are forked from this one
    shown_warnings: set[str] = set()
    n_inputs = len(tasks)
    images_bar = progress_bar(ctx, n_inputs, command, unit="img") if n_inputs > 1 else None
    stage_bars = StageBars(ctx)

    def received(record: dict) -> None:
        stage_bars.close()
        if images_bar is not None:
            images_bar.update(1)
        writer = images_bar.write if images_bar is not None else None
        if record["status"] == "failed":
            _echo(f"Error: {record['input']}: {record['error']}", writer)
            if is_verbose(ctx) and record.get("traceback"):
                _echo(record["traceback"].rstrip(), writer)
        for message in record.get("warnings", []):
            if message not in shown_warnings and not is_quiet(ctx):
                shown_warnings.add(message)
                _echo(f"Warning: {record['input']}: {message}", writer)
        if on_record is not None:
            on_record(record)
        if record["status"] == "done" and summary is not None and not is_quiet(ctx):
            line = summary(record)
            if line:
                _echo(line, writer, err=False)

    progress = None
    if jobs == 1 and scheduler is None:

        def progress(stage: str, done: int, total: int) -> None:
            stage_bars(stage, done, total)

    try:
        result = run_tasks(
            function, tasks, settings, jobs=jobs, scheduler=scheduler, skip_existing=skip_existing,
            on_record=received, progress=progress, decided=decided,
        )  # fmt: skip
    finally:
        stage_bars.close()
        if images_bar is not None:
            images_bar.close()
    counts = result.counts
    n_anomalies = anomalies(result) if anomalies is not None else 0
    if result.stopped_by is not None:
        exit_code = EXIT_TERMINATED if result.stopped_by == signal.SIGTERM else EXIT_INTERRUPTED
    elif counts["failed"]:
        exit_code = EXIT_INPUT_ERROR
    elif n_anomalies and (ctx.params.get("fail_on_anomaly")):
        exit_code = EXIT_ANOMALY
    else:
        exit_code = 0
    if on_finish is not None:
        on_finish(result, exit_code)
    if report_path is not None:
        report = build_report(
            ctx, command, settings, result, exit_code, scheduler, extra_header,
            extra_counts(result) if extra_counts else None,
        )  # fmt: skip
        (write_report or write_json_report)(report_path, report)
    _finish(ctx, result, verb, report_path, scheduler, final_note(result) if final_note else "")
    if exit_code:
        ctx.exit(exit_code)
    return result


def _echo(message: str, writer: Callable[..., None] | None, err: bool = True) -> None:
    if writer is not None:
        writer(message, file=sys.stderr if err else sys.stdout)
    else:
        click.echo(message, err=err)


def _finish(
    ctx: click.Context, result: BatchResult, verb: str, report_path: str | None, scheduler: str | None, note: str
) -> None:
    counts = result.counts
    seconds = result.finished - result.started
    where = ""
    if scheduler is not None:
        where = f" on the Dask cluster at {scheduler}"
    elif result.workers > 1:
        where = f" with {result.workers} jobs"
    parts = [f"{verb} {counts['done']} of {counts['inputs']} image(s){note} in {seconds:.1f} s{where}"]
    if counts["skipped"]:
        parts.append(f"{counts['skipped']} skipped (done before)")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    line = "; ".join(parts) + (f" -> {report_path}" if report_path else "")
    if result.stopped_by is not None:
        name = signal.Signals(result.stopped_by).name
        click.echo(
            f"Error: stopped by {name}: {counts['done']} of {counts['inputs']} image(s) done, "
            f"{counts['not_started']} not started; no partial output files were left"
            + (f"; report: {report_path}" if report_path else ""),
            err=True,
        )
    else:
        say(ctx, line)
    failed = [record for record in result.records if record["status"] == "failed"]
    if failed:
        click.echo(f"Error: {len(failed)} of {counts['inputs']} input(s) could not be processed:", err=True)
        for record in failed:
            click.echo(f"  {record['input']}: {record['error']}", err=True)
