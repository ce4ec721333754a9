"""The batch engine: run one function over many inputs, serially, in a pool of
worker processes, or on a Dask cluster, and gather one record per input in
input order.

A command hands the engine a top-level *task function*
``function(task, settings, progress) -> dict`` (picklable: defined at module
level), a frozen, picklable *settings* object, and a list of :class:`Task`.
The engine calls the function once per task through :func:`execute`, which
turns what happened into a record with the fields every command shares
(``input``, ``output``, ``status``, ``error``, ``seconds``, ``warnings``)
plus the function's own. A failure of one input (a bad file, a ``ValueError``
from the numeric core, out of memory, a worker killed by the kernel) fails that
input only; the rest goes on.

Executors
---------
``jobs=1``
    In this process, with a progress callback for per-stage bars.
``jobs=N``
    N worker processes of the standard library's ``multiprocessing``, each
    running one task at a time, so a worker that dies (killed by the kernel's
    out-of-memory killer, say) is known to have been running exactly one task:
    that task fails, the worker is replaced, and the batch goes on.
    (``concurrent.futures.ProcessPoolExecutor`` marks every pending task as
    failed when one worker dies, and ``multiprocessing.Pool`` loses the task.)
``scheduler=ADDRESS``
    An existing Dask distributed cluster (Rocklin 2015), through
    ``distributed.Client(ADDRESS)``; an optional dependency.

Every executor gives the same records (timings aside) and, since each task
limits BLAS to one thread and takes its seed from the settings, the same
output bytes.

Stopping
--------
SIGINT and SIGTERM stop the run: queued tasks are not started, running worker
processes are terminated (their atomic writes remove their temporary files;
any left by a worker that had to be killed are removed here), and
:func:`run_tasks` returns with ``stopped_by`` set; the records of tasks that
did not finish have status ``"not_started"``.

References
----------
.. [1] M. Rocklin, "Dask: Parallel computation with blocked algorithms and task
       scheduling", Proceedings of the 14th Python in Science Conference, 2015.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
import traceback
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import Any

from ._allocator import numeric_allocation
from .errors import SpmcliError
from .io.atomic import forget_written, written_paths

__all__ = [
    "STATUSES",
    "BatchResult",
    "SchedulerUnavailable",
    "Stopped",
    "Task",
    "execute",
    "make_map",
    "run_tasks",
    "usable_cores",
]

STATUSES = ("done", "failed", "skipped", "not_started")
ProgressCallback = Callable[[str, int, int], None]
TaskFunction = Callable[["Task", Any, "ProgressCallback | None"], dict]
# Seconds a terminated worker gets to clean up before it is killed.
_TERMINATE_GRACE = 1.0
# Environment variable a test can set to make the task of the input of this
# file name kill its worker process (the fault-injection hook of the batch
# tests; see execute()). It never acts in the engine's own process.
KILL_HOOK_VARIABLE = "SPMCLI_TEST_KILL_INPUT"
_IN_WORKER = False


@dataclass(frozen=True)
class Task:
    """One input of a batch.

    Attributes
    ----------
    index : int
        Position in the batch (records come back in this order).
    input : str
        The input file.
    output : str or None
        The main output file, if any.
    outputs : tuple of str
        Every file the task writes (main output included), for
        ``--skip-existing`` and for removing the temporaries of a stopped task.
    payload : object
        Per-task arguments a task function may need beyond the settings
        (picklable; not part of the record).
    """

    index: int
    input: str
    output: str | None = None
    outputs: tuple[str, ...] = ()
    payload: Any = None


class Stopped(BaseException):
    """Raised in the engine's process when SIGINT or SIGTERM arrives."""

    def __init__(self, signal_number: int) -> None:
        super().__init__(signal_number)
        self.signal_number = signal_number


class SchedulerUnavailable(SpmcliError):
    """``--scheduler`` was given but Dask's ``distributed`` is not installed or the cluster cannot be reached."""


@dataclass
class BatchResult:
    """What :func:`run_tasks` returns.

    Attributes
    ----------
    records : list of dict
        One per task, in task order.
    stopped_by : int or None
        The signal that stopped the run (``signal.SIGINT``, ``signal.SIGTERM``), if any.
    started, finished : float
        Wall-clock times (``time.time()``).
    workers : int
        Processes (or cluster workers) the tasks ran on.
    """

    records: list[dict]
    stopped_by: int | None = None
    started: float = 0.0
    finished: float = 0.0
    workers: int = 1
    counts: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.count()

    def count(self) -> dict[str, int]:
        self.counts = {"inputs": len(self.records), **{status: 0 for status in STATUSES}}
        for record in self.records:
            self.counts[record["status"]] += 1
        return self.counts


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS tells)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _describe_failure(task: Task, error: BaseException) -> str:
    if isinstance(error, SpmcliError):
        where = error.path or task.input
        return error.message if where == task.input else f"{where}: {error.message}"
    if isinstance(error, MemoryError):
        return "out of memory (try smaller images, a larger --stride, or fewer --jobs)"
    if isinstance(error, ValueError):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    return f"unexpected failure: {type(error).__name__}: {error} (run with -v for details)"


def execute(function: TaskFunction, task: Task, settings: Any, progress: ProgressCallback | None = None) -> dict:
    """Run one task and return its record (never raises for a failure of the input).

    The record holds ``input``, ``output``, ``status`` (``"done"`` or
    ``"failed"``), ``error`` (the cause, or None), ``seconds``, ``warnings``
    (messages of the warnings raised, in order) and, when done, the fields the
    task function returned. BLAS is limited to one thread: the numeric core
    works on small blocks, and results must not depend on the thread count.
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    record: dict[str, Any] = {"input": task.input, "output": task.output, "status": "done", "error": None}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if _IN_WORKER and Path(task.input).name == os.environ.get(KILL_HOOK_VARIABLE):
                os.kill(os.getpid(), signal.SIGKILL)  # test hook: the kernel kills this worker mid-task
            with threadpool_limits(limits=1, user_api="blas"), numeric_allocation():
                fields = function(task, settings, progress)
            record.update(fields or {})
        except Exception as error:  # one input's failure (MemoryError included) must not stop the batch
            record.update(status="failed", error=_describe_failure(task, error))
            record["traceback"] = traceback.format_exc()
    messages: list[str] = []
    for item in caught:
        text = str(item.message)
        if text not in messages:
            messages.append(text)
    record["warnings"] = messages
    record["seconds"] = round(time.perf_counter() - started, 4)
    # The shared fields come first, then the command's own, in a stable order.
    order = ["input", "output", "status", "error", "seconds", "warnings"]
    return {key: record[key] for key in order} | {key: value for key, value in record.items() if key not in order}


def _skipped(task: Task) -> dict:
    return {"input": task.input, "output": task.output, "status": "skipped", "error": None, "seconds": 0.0,
            "warnings": [], "note": "outputs exist (--skip-existing)"}  # fmt: skip


def _not_started(task: Task) -> dict:
    return {"input": task.input, "output": task.output, "status": "not_started", "error": None, "seconds": 0.0,
            "warnings": []}  # fmt: skip


def _output_paths(task: Task) -> tuple[str, ...]:
    """Every file ``task`` writes: its ``outputs``, else its main ``output``."""
    return task.outputs or ((task.output,) if task.output else ())


def _outputs_exist(task: Task) -> bool:
    outputs = _output_paths(task)
    return bool(outputs) and all(Path(path).is_file() for path in outputs)


def _task_outputs(task: Task) -> frozenset[str]:
    return frozenset(os.path.abspath(path) for path in _output_paths(task))


class _StopControl:
    """When SIGINT or SIGTERM stops the engine: at once, or just after the
    moment that must not be cut short.

    Held while a record is taken in (received, then stored: cut between the
    two, a finished image would be reported not started), and while the task
    running in this process (one job) has written all its outputs but not yet
    returned its record. A signal in those moments is kept and raised as
    :class:`Stopped` when they end. Once stopped, further signals are ignored:
    the shutdown (a second or two) is not cut short either.
    """

    def __init__(self) -> None:
        self.holding = 0
        self.outputs: frozenset[str] = frozenset()
        self.pending: int | None = None
        self.stopped = False

    def signalled(self, number: int) -> None:
        if self.stopped:
            return
        if self.holding or (self.outputs and self.outputs <= written_paths()):
            self.pending = number
            return
        self.stop(number)

    def stop(self, number: int) -> None:
        self.stopped = True
        raise Stopped(number)

    def raise_pending(self) -> None:
        if not self.holding and self.pending is not None and not self.stopped:
            self.stop(self.pending)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self.holding += 1
        try:
            yield
        finally:
            self.holding -= 1
        self.raise_pending()

    def run_here(self, task: Task) -> None:
        """The task about to run in this process."""
        forget_written()
        self.outputs = _task_outputs(task)

    def ran_here(self) -> None:
        self.outputs = frozenset()
        self.raise_pending()


@contextlib.contextmanager
def _stop_on_signals(control: _StopControl) -> Iterator[None]:
    """Turn SIGINT and SIGTERM into :class:`Stopped` while the batch runs (see :class:`_StopControl`).

    A SIGINT that was ignored when the process started (a background job) stays ignored.
    """

    def handler(number: int, frame: object) -> None:
        control.signalled(number)

    previous = {}
    if threading_is_main():
        for number in (signal.SIGINT, signal.SIGTERM):
            current = signal.getsignal(number)
            if number == signal.SIGINT and current == signal.SIG_IGN:
                continue
            previous[number] = current
            signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def remove_temporaries(task: Task) -> None:
    """Remove the temporary files (``.<stem>.*.part<suffix>``, see
    :func:`spmcli.io.atomic.atomic_path`) of a task whose process was killed."""
    for output in _output_paths(task):
        target = Path(output)
        folder = target.parent if str(target.parent) else Path(".")
        with contextlib.suppress(OSError):
            for leftover in folder.glob(f".{target.stem}.*.part{target.suffix}"):
                leftover.unlink()


def run_tasks(
    function: TaskFunction,
    tasks: Sequence[Task],
    settings: Any,
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    skip_existing: bool = False,
    on_record: Callable[[dict], None] | None = None,
    progress: ProgressCallback | None = None,
    decided: dict[int, dict] | None = None,
) -> BatchResult:
    """Run ``function`` over ``tasks`` and gather their records in task order.

    Parameters
    ----------
    function : callable
        ``function(task, settings, progress) -> dict`` of extra record fields;
        a module-level function (it is pickled by reference for workers).
    tasks : sequence of Task
    settings : object
        Frozen, picklable settings shared by every task.
    jobs : int
        Worker processes; 1 runs in this process.
    scheduler : str, optional
        Address of a Dask distributed scheduler; the tasks run there.
    skip_existing : bool
        Tasks whose outputs all exist are not run (status ``"skipped"``).
    on_record : callable, optional
        Called in this process with each record as it completes (any order).
    progress : callable, optional
        Per-stage progress callback passed to the function; used with one job only.
    decided : dict, optional
        Records already decided by the caller, by task position (for example
        inputs an inspection database says were scored before): not run.

    Returns
    -------
    BatchResult
    """
    started = time.time()
    records: list[dict | None] = [None] * len(tasks)

    def finish(index: int, record: dict) -> None:
        records[index] = record
        if on_record is not None:
            on_record(record)

    to_run = []
    for position, task in enumerate(tasks):
        if decided and position in decided:
            finish(position, decided[position])
        elif skip_existing and _outputs_exist(task):
            finish(position, _skipped(task))
        else:
            to_run.append((position, task))
    stopped_by = None
    workers = 1
    control = _StopControl()
    with _stop_on_signals(control):
        try:
            if scheduler is not None:
                workers = _run_on_cluster(function, to_run, settings, scheduler, finish, control)
            elif jobs > 1 and len(to_run) > 1:
                workers = min(jobs, len(to_run))
                _run_in_pool(function, to_run, settings, workers, finish, control)
            else:
                for position, task in to_run:
                    control.run_here(task)
                    record = execute(function, task, settings, progress)
                    with control.held():
                        finish(position, record)
                    control.ran_here()
        except Stopped as stop:
            stopped_by = stop.signal_number
    final = [record if record is not None else _not_started(task) for record, task in zip(records, tasks, strict=True)]
    return BatchResult(final, stopped_by, started, time.time(), workers)


@dataclass(frozen=True)
class _Mapped:
    """What :func:`make_map`'s tasks share: the function, and the arguments
    that are the same object in every item (by position; None for those
    that vary), so that a worker receives them once, not once per item."""

    function: Callable[..., Any]
    shared: tuple[Any, ...]
    varies: tuple[bool, ...]


def _apply(task: Task, mapped: _Mapped, progress: ProgressCallback | None) -> dict:
    varying = iter(task.payload)
    arguments = [next(varying) if varies else value for value, varies in zip(mapped.shared, mapped.varies, strict=True)]
    return {"value": mapped.function(*arguments)}


def make_map(jobs: int = 1, scheduler: str | None = None) -> Callable[..., list]:
    """A ``map(function, *iterables) -> list`` that runs on the batch engine's executors.

    For library functions that take a ``map_function`` (per-image stages of
    learning, for example): ``function`` must be a module-level function and
    the arguments picklable. The results come back in order; the first failure
    is raised as ``ValueError`` naming the item.
    """

    def engine_map(function: Callable[..., Any], *iterables: Any) -> list:
        items = list(zip(*iterables))  # noqa: B905 - like map(), stop at the shortest (itertools.repeat)
        if not items:
            return []
        # An argument that is one object in every item (a model, the settings)
        # goes to each worker once: unpickled once, its search trees built once.
        varies = tuple(
            len(items) == 1 or any(arguments[position] is not items[0][position] for arguments in items)
            for position in range(len(items[0]))
        )
        shared = tuple(None if flag else value for value, flag in zip(items[0], varies, strict=True))
        tasks = [
            Task(
                index,
                f"item {index}",
                payload=tuple(value for value, flag in zip(arguments, varies, strict=True) if flag),
            )
            for index, arguments in enumerate(items)
        ]
        mapped = _Mapped(function, shared, varies)
        result = run_tasks(_apply, tasks, mapped, jobs=jobs, scheduler=scheduler)
        if result.stopped_by is not None:
            raise Stopped(result.stopped_by)
        for record in result.records:
            if record["status"] != "done":
                raise ValueError(f"{record['input']}: {record['error']}")
        return [record["value"] for record in result.records]

    return engine_map


# -- process pool -----------------------------------------------------------------------


def _worker_main(connection: Any) -> None:
    """A worker's loop: receive ``(function, task, settings)``, run it, send its record; None ends the loop."""
    global _IN_WORKER
    _IN_WORKER = True
    # Ctrl-C reaches the whole process group: the engine decides, and stops us with SIGTERM,
    # which unwinds the task (atomic writes remove their temporaries) before the process ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # Once every output of the task is in place, the task is done but for its record, which
    # must reach the engine: a SIGTERM from then on lets the task finish and its record be
    # sent, and ends the worker just after (the engine waits _TERMINATE_GRACE for it).
    outputs: frozenset[str] = frozenset()
    sending = False
    stop_after_send = False

    def terminate(number: int, frame: object) -> None:
        nonlocal stop_after_send
        if sending or (outputs and outputs <= written_paths()):
            stop_after_send = True
            return
        raise SystemExit(128 + number)

    signal.signal(signal.SIGTERM, terminate)
    settings = None
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        function, task, sent = message
        if not isinstance(sent, _SameSettings):
            settings = sent
        forget_written()
        outputs = _task_outputs(task)
        record = execute(function, task, settings)
        sending = True
        with contextlib.suppress(OSError):
            connection.send((record, stop_after_send))  # the flag: this worker ends now
        if stop_after_send:
            raise SystemExit(128 + signal.SIGTERM)
        sending, outputs = False, frozenset()


class _SameSettings:
    """Sent in place of the settings a worker already holds."""

    def __reduce__(self) -> str:
        return "_SAME_SETTINGS"


_SAME_SETTINGS = _SameSettings()


class _Worker:
    def __init__(self, context: Any) -> None:
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self.current: tuple[int, Task] | None = None
        self.ending = False
        self.holds: Any = _SAME_SETTINGS  # the settings object this worker was sent

    def send(self, item: tuple[int, Task], function: TaskFunction, settings: Any) -> None:
        self.current = item
        # The settings go once per worker (a model in them is unpickled once).
        sent = _SAME_SETTINGS if settings is self.holds else settings
        self.connection.send((function, item[1], sent))
        self.holds = settings

    def stop(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.connection.send(None)


def _pool_context() -> Any:
    # fork starts workers without re-importing numpy and the package (the engine's
    # process runs no threads: progress bars run without tqdm's monitor thread);
    # elsewhere, spawn.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _death_record(task: Task, exitcode: int | None) -> dict:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.Signals._value2member_map_ else str(-exitcode)
        cause = f"worker process was killed by {name} while processing this image"
        if -exitcode == signal.SIGKILL:
            cause += " (the system's out-of-memory killer? try fewer --jobs)"
    else:
        cause = f"worker process died (exit code {exitcode}) while processing this image"
    return {"input": task.input, "output": task.output, "status": "failed", "error": cause, "seconds": None,
            "warnings": []}  # fmt: skip


def _run_in_pool(
    function: TaskFunction,
    to_run: list[tuple[int, Task]],
    settings: Any,
    jobs: int,
    finish: Callable[[int, dict], None],
    control: _StopControl,
) -> None:
    context = _pool_context()
    queue = deque(to_run)
    workers: list[_Worker] = []
    try:
        workers = [_Worker(context) for _ in range(jobs)]
        while queue or any(worker.current for worker in workers):
            for index, worker in enumerate(workers):
                if worker.current is None and queue:
                    if worker.ending:  # it was told to stop (a SIGTERM from outside) as it finished
                        worker.process.join()
                        worker.connection.close()
                        workers[index] = worker = _Worker(context)
                    worker.send(queue.popleft(), function, settings)
            busy = [worker for worker in workers if worker.current is not None]
            ready = wait([worker.connection for worker in busy] + [worker.process.sentinel for worker in busy])
            for index, worker in enumerate(workers):
                if worker.current is None:
                    continue
                if worker.connection in ready or worker.process.sentinel in ready:
                    position, task = worker.current
                    if _collect(worker, finish, control):
                        continue
                    if not worker.process.is_alive():
                        worker.process.join()
                        remove_temporaries(task)
                        with control.held():
                            finish(position, _death_record(task, worker.process.exitcode))
                        worker.connection.close()
                        workers[index] = _Worker(context)
    finally:
        _shut_down(workers, finish, control)


def _collect(worker: _Worker, finish: Callable[[int, dict], None], control: _StopControl) -> bool:
    """Pass on the record ``worker`` has sent, if one is waiting; True if it was."""
    with control.held():
        message = None
        with contextlib.suppress(EOFError, OSError):
            if worker.connection.poll():
                message = worker.connection.recv()
        if message is None or worker.current is None:
            return False
        record, worker.ending = message
        position, _ = worker.current
        worker.current = None
        finish(position, record)
        return True


def _shut_down(workers: list[_Worker], finish: Callable[[int, dict], None], control: _StopControl) -> None:
    """End every worker: idle ones are told to stop; busy ones are terminated
    (SIGTERM unwinds their task), then killed if they do not end in time.

    Records a worker sent before it ended are still passed on: a task that
    finished as the batch was stopped wrote its outputs and is counted as done.
    """
    for worker in workers:
        if worker.current is not None:
            _collect(worker, finish, control)
    busy = [worker for worker in workers if worker.current is not None]
    for worker in workers:
        if worker.current is None:
            worker.stop()
        elif worker.process.is_alive():
            with contextlib.suppress(OSError):
                worker.process.terminate()
    deadline = time.monotonic() + _TERMINATE_GRACE
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        if worker.current is not None:
            _collect(worker, finish, control)
        with contextlib.suppress(OSError):
            worker.connection.close()
    for worker in busy:
        if worker.current is not None:
            remove_temporaries(worker.current[1])


# -- Dask cluster -------------------------------------------------------------------------


def connect_to_cluster(address: str) -> Any:
    """A ``distributed.Client`` for ``address``; :class:`SchedulerUnavailable` when Dask's
    ``distributed`` is not installed or the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise SchedulerUnavailable(
            "--scheduler needs Dask's distributed package: pip install 'spmcli[dask]'", address
        ) from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as error:
        raise SchedulerUnavailable(f"cannot reach the Dask scheduler ({error})", address) from None


def _run_on_cluster(
    function: TaskFunction,
    to_run: list[tuple[int, Task]],
    settings: Any,
    address: str,
    finish: Callable[[int, dict], None],
    control: _StopControl,
) -> int:
    from distributed import as_completed

    client = connect_to_cluster(address)
    futures = {}
    try:
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        # Sent to every worker once, not with every task (a model in the settings is unpickled once per worker).
        shared = client.scatter(settings, broadcast=True, hash=False) if to_run else settings
        for position, task in to_run:
            future = client.submit(execute, function, task, shared, None, pure=False, retries=0)
            futures[future] = (position, task)
        for future in as_completed(futures, loop=client.loop):
            with control.held():
                position, task = futures.pop(future)
                try:
                    record = future.result()
                except Exception as error:
                    name = type(error).__name__
                    died = "a cluster worker died while processing this image"
                    cause = died if name == "KilledWorker" else str(error)
                    record = _death_record(task, None) | {"error": f"{cause} ({name})"}
                finish(position, record)
        return n_workers
    finally:
        # Stopped: tasks that finished before the stop wrote their outputs; count them.
        for future, (position, _) in list(futures.items()):
            with contextlib.suppress(Exception):
                if future.status == "finished":
                    finish(position, future.result(timeout=2))
                    del futures[future]
        with contextlib.suppress(Exception):
            client.cancel(list(futures))
        with contextlib.suppress(Exception):
            client.close(timeout=2)
