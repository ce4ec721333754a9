"""Learning and scoring time of the detector with its nearest-neighbour search
against the search it replaced, in one process, on one core.

The reference is the search of the second round: one balanced ``cKDTree`` over
every row, approximate with ``eps = 1`` for every feature group, both when the
memory banks are thinned (learning) and when patches are scored. spmcli's
(:func:`spmcli.inspection.density.search_tree` and ``search_eps``) uses
sliding-midpoint trees, searches exactly for groups of at most 3 features, and
looks for the nearest row among the distinct rows only. Both run on the same
images in alternating rounds; medians are reported. The scoring rounds share
one detector (learned with spmcli's search), so they differ by the search
alone. The script also reports how far each search's distances are from the
exact ones on the test images' own descriptors, in units of each expert's
normaliser (the scale of the anomaly map, where 1 is the rarest good patch).

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
from spmcli.inspection.fitting import fit_detector
from spmcli.inspection.settings import DetectorSettings

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def reference_tree(rows: np.ndarray, distinct: bool = False) -> tuple[cKDTree, None]:
    """The second round's tree: balanced, over every row."""
    return cKDTree(rows), None


def reference_eps(n_features: int) -> float:
    return density.SEARCH_EPS


SEARCHES = {
    "reference": (reference_tree, reference_eps),
    "spmcli": (density.search_tree, density.search_eps),
}


def use_search(name: str, detector=None) -> None:
    """Make ``density`` search as ``name`` does, forgetting the trees ``detector`` built."""
    density.search_tree, density.search_eps = SEARCHES[name]
    if detector is not None:
        for model in detector.scales:
            for expert in model.experts:
                expert._trees.clear()


def search_errors(detector, images: list) -> dict[str, tuple[float, float, float, float]]:
    """Per expert: mean and largest excess of each search's distance over the
    exact one, in normalisers: reference mean, reference largest, spmcli mean, spmcli largest."""
    queries: dict[str, list] = {}
    experts: dict[str, density.Expert] = {}
    scale_of = {id(expert): index for index, model in enumerate(detector.scales) for expert in model.experts}
    search = density.Expert.distances

    def recording(expert, descriptors, n_neighbours):
        key = f"scale {scale_of[id(expert)]} {expert.name}"
        queries.setdefault(key, []).append(expert.watched(descriptors))
        experts[key] = expert
        return search(expert, descriptors, n_neighbours)

    density.Expert.distances = recording
    try:
        for image in images:
            detector.score(image)
    finally:
        density.Expert.distances = search
    errors = {}
    for key, parts in queries.items():
        expert, watched = experts[key], np.concatenate(parts)
        exact, _ = cKDTree(expert.bank).query(watched, k=1)
        excess = []
        for name in SEARCHES:
            use_search(name)
            plain = density.Expert(expert.name, np.arange(watched.shape[1]), expert.bank)
            excess.append((plain.distances(watched, 1)[0] - exact) / expert.normaliser)
        use_search("spmcli")
        errors[key] = (excess[0].mean(), excess[0].max(), excess[1].mean(), excess[1].max())
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
    print("| set | learning s, reference / spmcli | ratio | scoring ms/image, reference / spmcli | ratio |")
    print("| --- | --- | --- | --- | --- |")
    details = []
    for name, load, count in sets:
        data = load()
        images = data.test[:count]
        learn: dict[str, list[float]] = {search: [] for search in SEARCHES}
        score: dict[str, list[float]] = {search: [] for search in SEARCHES}
        with threadpool_limits(limits=1):
            for _ in range(arguments.rounds):
                for search in SEARCHES:
                    use_search(search)
                    started = time.perf_counter()
                    _, detector = fit_detector(data.train, data.calib, settings=DetectorSettings(), seed=0)
                    learn[search].append(time.perf_counter() - started)
            for _ in range(arguments.rounds):
                for search in SEARCHES:
                    use_search(search, detector)
                    detector.score(images[0])  # trees are built outside the timing
                    started = time.perf_counter()
                    for image in images:
                        detector.score(image)
                    score[search].append((time.perf_counter() - started) / len(images) * 1000)
            use_search("spmcli", detector)
            errors = search_errors(detector, images[:20])
        learn_old, learn_new = np.median(learn["reference"]), np.median(learn["spmcli"])
        score_old, score_new = np.median(score["reference"]), np.median(score["spmcli"])
        print(
            f"| {name} ({len(images)} scored) | {learn_old:.2f} / {learn_new:.2f} | {learn_old / learn_new:.2f}x "
            f"| {score_old:.1f} / {score_new:.1f} | {score_old / score_new:.2f}x |"
        )
        for key, (old_mean, old_max, new_mean, new_max) in errors.items():
            details.append(f"| {name} | {key} | {old_mean:.4f} ({old_max:.2f}) | {new_mean:.4f} ({new_max:.2f}) |")
    print()
    print("| set | expert | excess over the exact distance, reference: mean (largest) | spmcli |")
    print("| --- | --- | --- | --- |")
    print("\n".join(details))
    print()
    print(f"medians of {arguments.rounds} alternating rounds; one BLAS thread; {os.cpu_count()} cores, {cpu_model()}")


if __name__ == "__main__":
    main()
