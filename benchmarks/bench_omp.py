"""Batch OMP against scikit-learn's ``orthogonal_mp_gram``, single-threaded, same run.

Signals: 8x8 patches of a natural image (mean removed, 0..255 scale); dictionary:
the 64x256 overcomplete DCT. Stopping rules: sparsity 4, sparsity 8, and the
error target of sigma 25 (squared residual 64 * (1.15 * 25)^2). Prints
microseconds per patch for each, the speed ratio, the share of identical
supports and the largest coefficient difference, as a Markdown table.

    python benchmarks/bench_omp.py [--image PATH] [--patches 4000] [--repeats 5]
"""

from __future__ import annotations

import os

# Both tools single-threaded, before numpy loads its BLAS.
for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from sklearn.linear_model import orthogonal_mp_gram  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from spmcli.io.images import read_image  # noqa: E402
from spmcli.sparse.dictionary import dct_dictionary  # noqa: E402
from spmcli.sparse.omp import batch_omp  # noqa: E402

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / "sample_images" / "camera.png"


def natural_patches(path: Path, n_patches: int, seed: int) -> np.ndarray:
    image = read_image(path).pixels * 255.0
    if image.ndim == 3:
        image = image.mean(axis=2)
    windows = np.lib.stride_tricks.sliding_window_view(image, (8, 8)).reshape(-1, 64)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(windows.shape[0], size=min(n_patches, windows.shape[0]), replace=False)
    patches = windows[np.sort(chosen)]
    patches = patches - patches.mean(axis=1, keepdims=True)
    # Flat patches get no atoms with an error target and are not a fair test of either tool.
    return patches[np.linalg.norm(patches, axis=1) > 1e-6]


def median_time(function, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--patches", type=int, default=4000)
    parser.add_argument("--reference-patches", type=int, default=1000, help="patches timed for sklearn (slow)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()

    atoms = dct_dictionary(8, 256)
    patches = natural_patches(arguments.image, arguments.patches, arguments.seed)
    n_reference = min(arguments.reference_patches, patches.shape[0])
    rules = [
        ("sparsity 4", {"sparsity": 4}, {"n_nonzero_coefs": 4}),
        ("sparsity 8", {"sparsity": 8}, {"n_nonzero_coefs": 8}),
        ("error, sigma 25", {"tol": 64 * (1.15 * 25) ** 2}, {"tol": 64 * (1.15 * 25) ** 2}),
    ]
    rows = []
    with threadpool_limits(limits=1):
        for name, ours_rule, reference_rule in rules:
            signals = patches
            if "tol" in ours_rule:
                # scikit-learn always selects one atom, even for a patch already within the
                # target; compare the two on the patches that need at least one.
                signals = patches[np.einsum("ij,ij->i", patches, patches) > ours_rule["tol"]]
            ours_seconds, ours = median_time(
                lambda rule=ours_rule, x=signals: batch_omp(x, atoms, **rule), arguments.repeats
            )
            ours32_seconds, _ = median_time(
                lambda rule=ours_rule, x=signals: batch_omp(x, atoms, dtype=np.float32, **rule), arguments.repeats
            )
            subset = signals[:n_reference]

            def reference(rule=reference_rule, subset=subset):
                # The same whole job as batch_omp: signals in, codes out (Gram, correlations, norms).
                gram = atoms @ atoms.T
                correlations = (subset @ atoms.T).T
                norms = np.einsum("ij,ij->i", subset, subset)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    return orthogonal_mp_gram(gram, correlations, norms_squared=norms, copy_Gram=False, **rule).T

            reference_seconds, reference_codes = median_time(reference, max(1, arguments.repeats // 2))
            ours_dense = ours.to_dense()[:n_reference]
            same_support = np.mean(np.all((ours_dense != 0) == (reference_codes != 0), axis=1))
            max_difference = float(np.abs(ours_dense - reference_codes).max())
            ours_us = ours_seconds / signals.shape[0] * 1e6
            ours32_us = ours32_seconds / signals.shape[0] * 1e6
            reference_us = reference_seconds / n_reference * 1e6
            mean_atoms = float(ours.n_nonzero.mean())
            label = f"{name} ({signals.shape[0]} patches)"
            ratio = reference_us / ours_us
            rows.append((label, mean_atoms, reference_us, ours_us, ratio, ours32_us, same_support, max_difference))

    print(f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; both tools on 1 thread.")
    print(
        f"Patches: {patches.shape[0]} mean-removed 8x8 patches of {arguments.image.name} (0..255 scale), "
        f"64x256 overcomplete DCT; sklearn timed on the first {n_reference}; "
        f"median of {arguments.repeats} runs.\n"
    )
    print("| stopping rule | atoms/patch | sklearn orthogonal_mp_gram µs/patch | spmcli batch_omp µs/patch | "
          "speed-up | spmcli float32 µs/patch | identical supports | max coef. difference |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, mean_atoms, reference_us, ours_us, ratio, ours32_us, same, difference in rows:
        print(f"| {name} | {mean_atoms:.2f} | {reference_us:.1f} | {ours_us:.2f} | {ratio:.1f}x | {ours32_us:.2f} | "
              f"{same * 100:.2f}% | {difference:.1e} |")  # fmt: skip
    print(f"\nCommand: python benchmarks/bench_omp.py {' '.join(sys.argv[1:])}".rstrip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
