"""Batches through whole processes: ``--jobs 1``, ``--jobs 2`` and a 2-worker local
Dask cluster, timed in the same run on the same machine.

Two workloads:

- ``reconstruct``: 16 noisy 512 x 512 grey images (the five 512 x 512 Set12
  images and eleven 512 x 512 crops of Set14 images in grey, white Gaussian
  noise of sigma 25, ``np.random.default_rng(0)``), written as 8-bit PNG;
- ``detect``: the first 100 KolektorSDD test images, with a model learned by
  ``learn-dict --detector`` from the 60 training and 40 calibration images.

Each configuration runs ``spmcli`` as a whole process, the three interleaved
repeat by repeat (the Dask cluster is
started before and is not timed: a user's cluster already runs). The outputs of
every configuration are compared byte for byte with ``--jobs 1``. Reported:
wall seconds (median of ``--repeats``), speed-up over one job, the peak
resident memory of one worker process, the start-up cost of a process
(``spmcli`` on one tiny image) and the engine's overhead per image:
``(workers x wall - workers x start-up - sum of the images' own seconds) / images``.

Usage::

    python benchmarks/bench_batch.py [--data ../shared/data] [--repeats 3] [--skip-detect]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from spmcli.io.images import read_image, to_grey, write_image

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ENVIRONMENT = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
MEASURE = """
import resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.run(sys.argv[1:]).returncode
seconds = time.perf_counter() - started
print(seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, code)
"""


def timed(arguments: list[str]) -> tuple[float, int]:
    """Wall seconds of ``spmcli *arguments`` as a whole process, and the peak RSS of
    its largest process (a worker, or the main process with one job)."""
    command = [sys.executable, "-c", MEASURE, sys.executable, "-m", "spmcli", "-q", *arguments]
    completed = subprocess.run(command, capture_output=True, text=True, env=ENVIRONMENT, check=False)
    seconds, peak, code = completed.stdout.split()
    if int(code) not in (0, 1):
        raise RuntimeError(f"spmcli {' '.join(arguments)} exited {code}: {completed.stderr}")
    return float(seconds), int(peak)


def noisy_set(data: Path, folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    clean = []
    for path in sorted((data / "Set12").glob("*.png")):
        pixels = read_image(path).pixels
        if pixels.shape == (512, 512):
            clean.append((path.stem, pixels))
    for path in sorted((data / "Set14").glob("*.bmp")):
        pixels = to_grey(read_image(path).pixels)
        if min(pixels.shape) >= 512:
            clean.append((f"set14_{path.stem}", pixels[:512, :512]))
        elif min(pixels.shape) >= 256:  # upsample a 256+ crop: still a natural 512 x 512 image
            crop = pixels[:256, :256]
            clean.append((f"set14_{path.stem}", np.kron(crop, np.ones((2, 2)))))
    paths = []
    for name, pixels in clean[:16]:
        noisy = np.clip(pixels + rng.normal(0, 25 / 255, pixels.shape), 0, 1)
        target = folder / f"{name}.png"
        write_image(target, noisy, dtype="uint8")
        paths.append(target)
    return paths


def ksdd_sets(data: Path, folder: Path, count: int) -> tuple[Path, Path, Path]:
    import csv

    root = data / "ksdd"
    parts = {}
    for part in ("train", "calib", "test"):
        target = folder / part
        target.mkdir(parents=True, exist_ok=True)
        with open(root / f"{part}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        if part == "test":
            rows = rows[:count]
        for row in rows:
            shutil.copy(root / row["path"], target / Path(row["path"]).name)
        parts[part] = target
    return parts["train"], parts["calib"], parts["test"]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def cluster_peak(address: str) -> int:
    from distributed import Client

    with Client(address, set_as_default=False) as client:
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return max(peaks.values())


def run_workload(name: str, build: callable, n_images: int, repeats: int, address: str, scratch: Path) -> list[dict]:
    """Time the three configurations, interleaved repeat by repeat so that a slow spell of a
    shared machine falls on all of them rather than on one."""
    configurations = (
        ("--jobs 1", ["--jobs", "1"]),
        ("--jobs 2", ["--jobs", "2"]),
        ("Dask, 2 workers", ["--scheduler", address]),
    )
    times: dict[str, list[float]] = {label: [] for label, _ in configurations}
    peaks = dict.fromkeys(times, 0)
    task_seconds: dict[str, list[float]] = {label: [] for label, _ in configurations}
    reference = None
    for repeat in range(repeats):
        for label, extra in configurations:
            out = scratch / f"{name}-{label.replace(' ', '_')}-{repeat}"
            report = out.with_suffix(".json")
            seconds, process_peak = timed([*build(out, report), *extra])
            times[label].append(seconds)
            peaks[label] = max(peaks[label], process_peak)
            produced = folder_bytes(out)
            if reference is None:
                reference = produced
            elif produced != reference:
                raise RuntimeError(f"{name} {label}: outputs differ from --jobs 1")
            records = json.loads(report.read_text())["records"]
            task_seconds[label].append(sum(record["seconds"] or 0 for record in records))
            shutil.rmtree(out, ignore_errors=True)
    peaks["Dask, 2 workers"] = cluster_peak(address)
    rows = [
        {"workload": name, "config": label, "seconds": statistics.median(times[label]), "peak": peaks[label],
         "task_seconds": statistics.median(task_seconds[label]), "images": n_images}
        for label, _ in configurations
    ]  # fmt: skip
    base = rows[0]["seconds"]
    for row in rows:
        row["speedup"] = base / row["seconds"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--ksdd-images", type=int, default=100)
    parser.add_argument("--skip-detect", action="store_true")
    arguments = parser.parse_args()

    from distributed import LocalCluster

    scratch = Path(tempfile.mkdtemp(prefix="spmcli-bench-batch-"))
    os.environ.update(ENVIRONMENT)  # the cluster's workers get the same one-thread setting as the processes
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    try:
        tiny = scratch / "tiny.png"
        write_image(tiny, np.full((16, 16), 0.5), dtype="uint8")
        startup = statistics.median(
            timed(["tv-denoise", str(tiny), "-o", str(scratch / "tiny_out.png"), "--weight", "0.1"])[0]
            for _ in range(3)
        )
        images = noisy_set(arguments.data, scratch / "noisy")
        rows = run_workload(
            "reconstruct 16 x 512²",
            lambda out, report: [
                "reconstruct",
                str(scratch / "noisy"),
                "--output-dir",
                str(out),
                "--sigma",
                "25",
                "--report",
                str(report),
            ],
            len(images),
            arguments.repeats,
            cluster.scheduler_address,
            scratch,
        )
        if not arguments.skip_detect:
            train, calibration, test = ksdd_sets(arguments.data, scratch / "ksdd", arguments.ksdd_images)
            model = scratch / "ksdd_model.npz"
            subprocess.run(
                [sys.executable, "-m", "spmcli", "-q", "learn-dict", str(train), "-o", str(model), "--detector",
                 "--calibration-images", str(calibration)],
                check=True, env=ENVIRONMENT,
            )  # fmt: skip
            rows += run_workload(
                f"detect {arguments.ksdd_images} KolektorSDD",
                lambda out, report: [
                    "detect",
                    str(test),
                    "--dict",
                    str(model),
                    "--heatmap-dir",
                    str(out),
                    "--report",
                    str(report),
                ],
                arguments.ksdd_images,
                arguments.repeats,
                cluster.scheduler_address,
                scratch,
            )
    finally:
        cluster.close()
        shutil.rmtree(scratch, ignore_errors=True)

    cores = len(os.sched_getaffinity(0))
    print(f"Machine: {cores} usable cores; BLAS one thread per process; medians of {arguments.repeats} run(s).")
    print(f"Process start-up (spmcli on a 16 x 16 image, whole process): {startup:.2f} s\n")
    columns = ["workload", "configuration", "wall s", "speed-up vs --jobs 1", "s per image", "overhead ms per image"]
    print("| " + " | ".join([*columns, "peak MB per worker"]) + " |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        workers = 1 if row["config"] == "--jobs 1" else 2
        overhead = (workers * (row["seconds"] - startup) - row["task_seconds"]) / row["images"]
        print(
            f"| {row['workload']} | {row['config']} | {row['seconds']:.1f} | {row['speedup']:.2f}x | "
            f"{row['seconds'] / row['images']:.2f} | {1000 * overhead:.0f} | {row['peak'] / 1e6:.0f} |"
        )
    print(f"\nCommand: python benchmarks/bench_batch.py --repeats {arguments.repeats}")


if __name__ == "__main__":
    main()
