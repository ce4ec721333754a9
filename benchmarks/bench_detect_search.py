"""Scoring time of the detector with its nearest-neighbour search against the
search it replaced, in one process, on one core.

The reference is the search of the second round (one balanced ``cKDTree`` over
every bank row, approximate with ``eps = 1`` for every expert); spmcli's is
:meth:`spmcli.inspection.density.Expert.distances` (sliding-midpoint tree,
exact for experts of at most 3 features, the nearest row searched among the
bank's distinct rows). Both score the same images with the same fitted
detector, in alternating rounds; medians are reported. It also reports how
far each search's distances are from the exact ones on the images' own
descriptors, in units of each expert's normaliser (the scale of the anomaly map).

Usage::

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_detect_search.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_denoise import cpu_model
from detect_data import load_elpv, load_ksdd

from spmcli.inspection import density
from spmcli.inspection.detector import DetectorSettings, fit_detector

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPMCLI_SEARCH = density.Expert.distances


def reference_search(expert: density.Expert, descriptors: np.ndarray, n_neighbours: int) -> tuple:
    """The second round's search: a balanced tree over all rows, eps 1 for every expert."""
    tree = expert.__dict__.get("_reference_tree")
    if tree is None:
        tree = expert.__dict__["_reference_tree"] = cKDTree(expert.bank)
    count = min(n_neighbours, expert.bank.shape[0])
    distances, indices = tree.query(expert.watched(descriptors), k=count, eps=density.SEARCH_EPS)
    return (distances, indices) if count == 1 else (distances.mean(axis=1), indices[:, 0])


def search_errors(detector, images: list) -> dict[str, tuple[float, float, float, float]]:
    """Per expert: mean and largest excess of each search's distance over the
    exact one, in units of the expert's normaliser (1 = the rarest good patch):
    reference mean, reference largest, spmcli mean, spmcli largest."""
    queries: dict[str, list] = {}
    experts: dict[str, density.Expert] = {}
    scale_of = {id(expert): index for index, model in enumerate(detector.scales) for expert in model.experts}

    def recording(expert, descriptors, n_neighbours):
        key = f"scale {scale_of[id(expert)]} {expert.name}"
        queries.setdefault(key, []).append(expert.watched(descriptors))
        experts[key] = expert
        return SPMCLI_SEARCH(expert, descriptors, n_neighbours)

    density.Expert.distances = recording
    try:
        for image in images:
            detector.score(image)
    finally:
        density.Expert.distances = SPMCLI_SEARCH
    errors = {}
    for key, parts in queries.items():
        expert, watched = experts[key], np.concatenate(parts)
        exact, _ = cKDTree(expert.bank).query(watched, k=1)
        identity = density.Expert(expert.name, np.arange(watched.shape[1]), expert.bank)
        reference = (reference_search(identity, watched, 1)[0] - exact) / expert.normaliser
        ours = (SPMCLI_SEARCH(identity, watched, 1)[0] - exact) / expert.normaliser
        errors[key] = (float(reference.mean()), float(reference.max()), float(ours.mean()), float(ours.max()))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    sets = [
        ("ELPV mono", lambda: load_elpv(arguments.data, "mono", "holdout"), 100),
        ("KolektorSDD", lambda: load_ksdd(arguments.data, "holdout"), 40),
    ]
    print("| set | images | reference ms/image | spmcli ms/image | ratio | excess over exact distance, mean (max) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, load, count in sets:
        data = load()
        images = data.test[:count]
        with threadpool_limits(limits=1):
            _, detector = fit_detector(data.train, data.calib, settings=DetectorSettings(), seed=0)
            times: dict[str, list[float]] = {"reference": [], "spmcli": []}
            for _ in range(arguments.rounds):
                for label, search in (("reference", reference_search), ("spmcli", SPMCLI_SEARCH)):
                    density.Expert.distances = search
                    detector.score(images[0])  # trees are built outside the timing
                    started = time.perf_counter()
                    for image in images:
                        detector.score(image)
                    times[label].append((time.perf_counter() - started) / len(images) * 1000)
            density.Expert.distances = SPMCLI_SEARCH
            errors = search_errors(detector, images[:20])
        reference, ours = np.median(times["reference"]), np.median(times["spmcli"])
        excess = "; ".join(
            f"{key}: reference {old_mean:.4f} (max {old_max:.2f}), spmcli {new_mean:.4f} (max {new_max:.2f})"
            for key, (old_mean, old_max, new_mean, new_max) in errors.items()
        )
        print(f"| {name} | {len(images)} | {reference:.1f} | {ours:.1f} | {reference / ours:.2f}x | {excess} |")
    print()
    print(f"median of {arguments.rounds} alternating rounds; one BLAS thread; {os.cpu_count()} cores, {cpu_model()}")


if __name__ == "__main__":
    main()
