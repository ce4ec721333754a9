"""The total-variation solvers spmcli runs, with one weight convention.

scikit-image's Chambolle and split-Bregman solvers put their ``weight`` on
different terms of the Rudin-Osher-Fatemi energy (scikit-image issue 5379);
:func:`solver_weight` converts spmcli's weight (Chambolle's: larger = smoother,
0..1 intensity scale) to each solver's own. :func:`chambolle` runs in float32
and dispatches colour to :func:`vectorial_tv_chambolle` (one gradient norm over
all channels, Bresson & Chan 2008). See :mod:`spmcli.restoration.total_variation`
for the measurements behind the constants.

References
----------
.. [1] A. Chambolle, "An algorithm for total variation minimization and
       applications", J. Math. Imaging Vision 20, 2004.
.. [2] T. Goldstein, S. Osher, "The split Bregman method for L1-regularized
       problems", SIAM J. Imaging Sci. 2(2), 2009.
.. [3] X. Bresson, T. F. Chan, "Fast dual minimization of the vectorial total
       variation norm and applications to color image processing", Inverse
       Problems and Imaging 2(4), 2008.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BREGMAN_FACTOR",
    "METHODS",
    "bregman",
    "chambolle",
    "solver_weight",
    "vectorial_tv_chambolle",
]

METHODS = ("chambolle", "bregman")
# Median over skimage.data crops at sigma 10..60 of (best Chambolle weight) / (best Bregman 1/weight).
BREGMAN_FACTOR = 0.56
# scikit-image's iteration limits. Chambolle's stopping tolerance is tighter than
# scikit-image's 2e-4, which now and then stops after a few iterations: on Set12
# house at sigma 25, weight 0.081 gave 28.7 dB where 0.080 and 0.082 gave 30.3.
# 5e-5 removes those drops (and adds about 0.05 dB); float32 pays for the extra iterations.
CHAMBOLLE_EPS = 5.0e-5
CHAMBOLLE_MAX_ITERATIONS = 200
BREGMAN_EPS = 1.0e-3
BREGMAN_MAX_ITERATIONS = 100


def solver_weight(weight: float, method: str) -> float:
    """Convert spmcli's weight (larger = smoother) to the solver's own parameter.

    Chambolle takes it as it is; split Bregman takes ``BREGMAN_FACTOR / weight``
    (its weight multiplies the data-fidelity term).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not weight > 0 or not np.isfinite(weight):
        raise ValueError(f"weight must be a finite number > 0, got {weight}")
    return float(weight) if method == "chambolle" else float(BREGMAN_FACTOR / weight)


def chambolle(
    pixels: np.ndarray,
    weight: float,
    *,
    joint_channels: bool,
    eps: float = CHAMBOLLE_EPS,
    max_iterations: int = CHAMBOLLE_MAX_ITERATIONS,
) -> tuple[np.ndarray, float, int | None]:
    """Chambolle TV as spmcli runs it, in float32 (see the module docstring:
    same result, 2-3x faster).

    Colour with ``joint_channels`` goes to :func:`vectorial_tv_chambolle` with
    the weight times sqrt(C); anything else to scikit-image's solver.

    Returns
    -------
    denoised : ndarray (float32)
    solver_weight : float
        The weight the solver was given.
    iterations : int or None
        Iterations run, where the solver tells (the joint-colour solver).
    """
    single = pixels.astype(np.float32)
    if joint_channels and pixels.ndim == 3 and pixels.shape[2] > 1:
        weight *= float(np.sqrt(pixels.shape[2]))
        denoised, iterations = vectorial_tv_chambolle(single, weight, eps=eps, max_num_iter=max_iterations)
        return denoised, weight, iterations
    # Imported here, as in noise.py: skimage.restoration pulls in scipy.stats
    # (0.7-1.5 s), which `spmcli --help` and the other commands should not pay.
    from skimage.restoration import denoise_tv_chambolle

    channel_axis = -1 if pixels.ndim == 3 else None
    denoised = denoise_tv_chambolle(
        single, weight=weight, eps=eps, max_num_iter=max_iterations, channel_axis=channel_axis
    )
    return denoised, weight, None


def vectorial_tv_chambolle(
    image: np.ndarray,
    weight: float,
    eps: float = CHAMBOLLE_EPS,
    max_num_iter: int = CHAMBOLLE_MAX_ITERATIONS,
) -> tuple[np.ndarray, int]:
    """Colour TV denoising with one gradient magnitude over all channels.

    Chambolle's dual projection algorithm, step for step as scikit-image's
    ``_denoise_tv_chambolle_nd`` (same step size, same energy-based stopping
    rule), with the dual variable normalised by the vectorial gradient norm
    ``sqrt(sum_c |grad u_c|^2)`` of Bresson & Chan (2008).

    Parameters
    ----------
    image : ndarray, shape (H, W, C)
        Float32 or float64 (the computation keeps it); other types become float64.
    weight : float
        Chambolle's weight (larger = smoother).
    eps, max_num_iter
        Stopping rule: relative energy change below ``eps``, or the iteration limit.

    Returns
    -------
    denoised : ndarray, shape (H, W, C)
    iterations : int
    """
    image = np.asarray(image)
    if image.dtype not in (np.float32, np.float64):
        image = image.astype(np.float64)
    if image.ndim != 3:
        raise ValueError(f"expected an (H, W, C) image, got shape {image.shape}")
    image = np.ascontiguousarray(np.moveaxis(image, -1, 0))  # (C, H, W): reductions over leading axes are fast
    dual = np.zeros((2, *image.shape), dtype=image.dtype)
    gradient = np.zeros_like(dual)
    divergence = np.zeros_like(image)
    tau = 0.25  # 1 / (2 * number of spatial axes): the step that makes the projection converge
    out = image
    energy_initial = energy_previous = 0.0
    iteration = 0
    while iteration < max_num_iter:
        if iteration > 0:
            divergence = -dual.sum(axis=0)
            divergence[:, 1:] += dual[0, :, :-1]
            divergence[:, :, 1:] += dual[1, :, :, :-1]
            out = image + divergence
        energy = float((divergence**2).sum())
        gradient[0, :, :-1] = np.diff(out, axis=1)
        gradient[1, :, :, :-1] = np.diff(out, axis=2)
        norm = np.sqrt((gradient**2).sum(axis=(0, 1)))
        energy += weight * float(norm.sum())
        norm *= tau / weight
        norm += 1.0
        dual -= tau * gradient
        dual /= norm
        energy /= image.size
        if iteration == 0:
            energy_initial = energy_previous = energy
        elif abs(energy_previous - energy) < eps * energy_initial:
            break
        else:
            energy_previous = energy
        iteration += 1
    return np.moveaxis(out, 0, -1), iteration + 1


def bregman(
    pixels: np.ndarray, weight: float, *, anisotropic: bool = False, max_iterations: int = BREGMAN_MAX_ITERATIONS
) -> tuple[np.ndarray, float]:
    """Split-Bregman TV (scikit-image's solver, channel by channel) with spmcli's
    weight (larger = smoother), in float32.

    Returns
    -------
    denoised : ndarray (float32), shaped like ``pixels``
    solver_weight : float
        The weight the solver was given (:func:`solver_weight`).
    """
    from skimage.restoration import denoise_tv_bregman

    parameter = solver_weight(weight, "bregman")
    channel_axis = -1 if pixels.ndim == 3 else None
    denoised = denoise_tv_bregman(
        pixels.astype(np.float32), weight=parameter, max_num_iter=max_iterations, isotropic=not anisotropic,
        channel_axis=channel_axis,
    ).reshape(pixels.shape)  # fmt: skip
    return denoised, parameter
