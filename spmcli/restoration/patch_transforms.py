"""Transforms of patches and groups for collaborative filtering.

The 2-D patch transforms are matrices on C-order flattened patches: the
orthonormal DCT-II (BM3D's second step) and a full biorthogonal wavelet
decomposition such as bior1.5 (BM3D's first step), both with unit-norm
forward rows so that white noise keeps its standard deviation on every
coefficient. Across a group, the orthonormal Haar transform of a
power-of-two length.

References
----------
.. [1] K. Dabov, A. Foi, V. Katkovnik and K. Egiazarian, "Image Denoising by
       Sparse 3-D Transform-Domain Collaborative Filtering", IEEE Trans. Image
       Processing 16(8), 2007.
"""

from __future__ import annotations

import numpy as np

__all__ = ["dct_matrix", "haar_matrix", "kaiser_window", "patch_transform"]


def dct_matrix(length: int) -> np.ndarray:
    """Orthonormal DCT-II matrix; rows are the basis vectors, the constant first."""
    frequencies = np.arange(length)[:, None]
    samples = np.arange(length)[None, :] + 0.5
    matrix = np.cos(np.pi * frequencies * samples / length)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def haar_matrix(length: int) -> np.ndarray:
    """Orthonormal Haar matrix of a power-of-two length; rows, the mean first."""
    if length == 1:
        return np.ones((1, 1))
    coarse = haar_matrix(length // 2)
    return np.vstack([np.kron(coarse, [1.0, 1.0]), np.kron(np.eye(length // 2), [1.0, -1.0])]) / np.sqrt(2.0)


def _wavelet_matrix(length: int, wavelet: str) -> np.ndarray:
    """Full periodic decomposition by ``wavelet`` (PyWavelets) as a matrix, rows scaled to unit norm."""
    import warnings

    import pywt

    columns = []
    with warnings.catch_warnings():
        # A full decomposition of 8 samples is "too deep" for pywt's taste; it is what BM3D uses.
        warnings.simplefilter("ignore", UserWarning)
        for index in range(length):
            impulse = np.zeros(length)
            impulse[index] = 1.0
            levels = int(np.log2(length))
            columns.append(np.concatenate(pywt.wavedec(impulse, wavelet, mode="periodization", level=levels)))
    matrix = np.array(columns).T
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def patch_transform(name: str, patch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Forward and inverse matrices of a separable 2-D patch transform.

    ``name`` is ``"dct"`` (orthonormal) or a PyWavelets biorthogonal wavelet
    such as ``"bior1.5"`` (BM3D's first-step transform; power-of-two patch
    sizes). Forward rows have unit norm, so white noise of standard deviation
    sigma has standard deviation sigma on every coefficient. Patches are
    flattened in C order; ``coefficients = patches @ forward.T`` and
    ``patches = coefficients @ inverse.T``.
    """
    if name == "dct":
        one = dct_matrix(patch_size)
        forward = np.kron(one, one)
        return forward, forward.T.copy()
    if patch_size & (patch_size - 1):
        raise ValueError(f"the {name} transform needs a power-of-two patch size, got {patch_size}")
    one = _wavelet_matrix(patch_size, name)
    forward = np.kron(one, one)
    forward /= np.linalg.norm(forward, axis=1, keepdims=True)
    return forward, np.linalg.inv(forward)


def kaiser_window(patch_size: int, beta: float) -> np.ndarray:
    one = np.kaiser(patch_size, beta) if beta > 0 else np.ones(patch_size)
    return np.outer(one, one).astype(np.float32)


def learn_sparsifying_transform(
    patches: np.ndarray, threshold: float, *, n_iterations: int = 10, initial: np.ndarray | None = None
) -> np.ndarray:
    """Learn an orthonormal transform in which ``patches`` are sparse (the constant atom kept first).

    Alternates hard thresholding of the coefficients with the closed-form
    orthonormal (Procrustes) update of the transform [1]_ [2]_, minimising
    ``||W x - z||^2`` over sparse ``z`` and orthonormal ``W``, on the patches'
    mean-removed parts; the first row stays the constant (mean) atom, so a
    group's mean keeps its meaning in the collaborative filters.

    Parameters
    ----------
    patches : ndarray, shape (n_patches, patch_size**2)
        Training patches, flattened in C order (a square patch size).
    threshold : float
        Coefficients below this are set to zero in each sparse-coding step
        (the scale of the patches: 1.5 sigma for a denoised pilot).
    n_iterations : int
        Alternations.
    initial : ndarray, optional
        The start (by default the orthonormal 2-D DCT).

    Returns
    -------
    ndarray, shape (patch_size**2, patch_size**2)
        Orthonormal forward transform (rows); its transpose is the inverse.

    References
    ----------
    .. [1] S. Ravishankar and Y. Bresler, "Closed-Form Solutions Within
           Sparsifying Transform Learning", ICASSP 2013.
    .. [2] S. Ravishankar and Y. Bresler, "l0 Sparsifying Transform Learning
           With Efficient Optimal Updates and Convergence Guarantees", IEEE
           Trans. Signal Processing 63(9), 2015.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> patches = rng.normal(size=(2000, 16))
    >>> transform = learn_sparsifying_transform(patches, 1.0)
    >>> bool(np.allclose(transform @ transform.T, np.eye(16)))
    True
    """
    n_values = patches.shape[1]
    patch_size = round(np.sqrt(n_values))
    if patch_size * patch_size != n_values:
        raise ValueError(f"patches of {n_values} values are not square")
    start = dct_matrix(patch_size) if initial is None else None
    start = np.kron(start, start) if initial is None else np.asarray(initial, dtype=np.float64)
    # Learn within the orthogonal complement of the constant atom.
    complement = start[1:].T  # (n_values, n_values - 1), orthonormal columns
    centred = patches - patches.mean(axis=1, keepdims=True)
    # float32 products (2x faster); the rotation itself is kept in float64.
    data = (centred @ complement).astype(np.float32)  # (n_patches, n_values - 1)
    rotation = np.eye(n_values - 1)
    for _ in range(n_iterations):
        codes = data @ rotation.T.astype(np.float32)
        codes *= np.abs(codes) >= threshold
        # Procrustes: the orthonormal rotation closest to mapping data onto codes.
        left, _, right = np.linalg.svd((codes.T @ data).astype(np.float64))
        rotation = left @ right
    return np.vstack([start[:1], rotation @ complement.T])
