"""Learning a patch :class:`~spmcli.sparse.dictionary.Dictionary` from images with K-SVD.

Learning runs in two stages: each image gives its share of training patches
(:func:`sample_image_patches`, one image at a time, seeded by the image's
position in the list, so the images can be sampled in any order or in
parallel with the same result), then K-SVD learns from all of them
(:func:`learn_dictionary_from_patches`). :func:`learn_dictionary` chains the two.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from .._version import __version__
from .dictionary import Dictionary, dct_dictionary
from .ksvd import KSVD
from .patches import as_channels_last, remove_patch_means, sample_patches

__all__ = [
    "MIN_PATCHES_PER_ATOM",
    "learn_dictionary",
    "learn_dictionary_from_patches",
    "patch_quotas",
    "sample_image_patches",
]

INIT_CHOICES = ("dct", "data")
# Below this many training patches per atom, K-SVD's atoms copy single patches
# rather than generalise (a warning says so).
MIN_PATCHES_PER_ATOM = 10


def patch_quotas(shapes: Sequence[tuple[int, ...]], patch_size: int, max_patches: int | None) -> list[int]:
    """How many training patches each image gives: in proportion to its number of
    patch positions, ``max_patches`` in all (every patch when there are fewer).

    Examples
    --------
    >>> patch_quotas([(10, 10), (20, 10)], 8, 5)
    [1, 4]
    """
    counts = []
    for shape in shapes:
        height, width = shape[:2]
        if height < patch_size or width < patch_size:
            raise ValueError(f"image is {width} x {height} pixels, smaller than the {patch_size} x {patch_size} patch")
        counts.append((height - patch_size + 1) * (width - patch_size + 1))
    counts_array = np.asarray(counts)
    total = int(counts_array.sum())
    if max_patches is None or max_patches >= total:
        return [int(count) for count in counts_array]
    exact = max_patches * counts_array / total
    shares = np.floor(exact).astype(int)
    leftover = max_patches - int(shares.sum())
    shares[np.argsort(-(exact - shares), kind="stable")[:leftover]] += 1
    return [int(share) for share in shares]


def sample_image_patches(image: np.ndarray, patch_size: int, n_patches: int, seed: int, index: int) -> np.ndarray:
    """``n_patches`` patches of one image at distinct random positions, seeded by
    ``(seed, index)`` so that each image's sample does not depend on the others'.

    Returns
    -------
    ndarray, shape (n_patches, patch_size**2 * n_channels)
    """
    pixels = as_channels_last(image)
    if n_patches <= 0:
        return np.zeros((0, patch_size * patch_size * pixels.shape[2]))
    rng = np.random.default_rng([seed, index])
    return sample_patches(pixels, patch_size, n_patches, rng)


def learn_dictionary_from_patches(
    patches: np.ndarray,
    *,
    patch_size: int,
    n_channels: int = 1,
    n_atoms: int = 256,
    sparsity: int | None = None,
    tol: float | None = None,
    n_iterations: int = 10,
    method: str = "exact",
    init: str = "dct",
    remove_mean: bool = True,
    seed: int = 0,
    n_images: int | None = None,
    callback: Callable[[int, int, float], None] | None = None,
) -> Dictionary:
    """Learn a dictionary with K-SVD from training patches (see :func:`learn_dictionary`).

    Warns (``UserWarning``) when there are fewer than
    :data:`MIN_PATCHES_PER_ATOM` non-flat training patches per atom.
    """
    if init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {INIT_CHOICES}, got {init!r}")
    if sparsity is None and tol is None:
        sparsity = 4
    if remove_mean:
        patches, _ = remove_patch_means(patches, n_channels)
    # Flat patches carry nothing to learn from (and have no direction for init="data").
    patches = patches[np.linalg.norm(patches, axis=1) > 1e-10]
    n_features = patch_size * patch_size * n_channels
    if patches.shape[0] == 0:
        raise ValueError("the images are flat: every training patch is constant")
    if patches.shape[0] < MIN_PATCHES_PER_ATOM * n_atoms:
        warnings.warn(
            f"{n_atoms:,} atoms learned from {patches.shape[0]:,} training patches (fewer than "
            f"{MIN_PATCHES_PER_ATOM} per atom): the atoms will copy single patches rather than generalise; "
            "learn fewer atoms or from more images",
            UserWarning,
            stacklevel=2,
        )
    squared_tol = None if tol is None else n_features * tol * tol
    initial = dct_dictionary(patch_size, n_atoms, n_channels) if init == "dct" else "data"
    model = KSVD(
        n_atoms,
        sparsity=sparsity,
        tol=squared_tol,
        n_iterations=n_iterations,
        method=method,
        init=initial,
        random_state=np.random.default_rng(seed),
        callback=callback,
    ).fit(patches)
    metadata = {
        "spmcli_version": __version__,
        "seed": seed,
        "n_iterations": n_iterations,
        "method": method,
        "init": init,
        "sparsity": sparsity,
        "tol": tol,
        "n_training_patches": int(patches.shape[0]),
        "n_training_images": n_images,
        "error_history": [round(value, 12) for value in model.error_history_],
        "n_replaced_atoms": model.n_replaced_,
    }
    return Dictionary(
        model.dictionary_,
        patch_size=patch_size,
        n_channels=n_channels,
        preprocessing="remove_mean" if remove_mean else "none",
        metadata=metadata,
    )


def learn_dictionary(
    images: Sequence[np.ndarray],
    *,
    patch_size: int = 8,
    n_atoms: int = 256,
    sparsity: int | None = None,
    tol: float | None = None,
    n_iterations: int = 10,
    method: str = "exact",
    init: str = "dct",
    max_patches: int | None = 20000,
    remove_mean: bool = True,
    seed: int = 0,
    callback: Callable[[int, int, float], None] | None = None,
    map_function: Callable[..., object] = map,
) -> Dictionary:
    """Learn a patch dictionary from images with K-SVD.

    Parameters
    ----------
    images : sequence of ndarray
        Float images on the 0..1 scale, all ``(H, W)`` or all ``(H, W, C)``
        with the same ``C``; sizes may differ.
    patch_size : int
        Side of the square patches.
    n_atoms : int
        Dictionary size.
    sparsity : int, optional
        Atoms per patch when coding; 4 when neither this nor ``tol`` is given.
    tol : float, optional
        Target RMS residual per value when coding (on the images' 0..1 scale);
        converted to the squared-norm target ``n_features * tol**2``.
    n_iterations : int
        K-SVD iterations.
    method : {"exact", "approx"}
        Atom update of K-SVD [1]_ or approximate K-SVD [2]_.
    init : {"dct", "data"}
        Start from the overcomplete DCT or from random training patches.
    max_patches : int or None
        Train on at most this many randomly chosen patches, each image giving
        a share in proportion to its size (:func:`patch_quotas`).
    remove_mean : bool
        Code patches without their per-channel mean (the usual choice for
        denoising: the dictionary then models texture, not brightness).
    seed : int
        Seed for patch sampling and K-SVD.
    callback : callable, optional
        ``callback(iteration, n_iterations, rmse)`` after each iteration.
    map_function : callable
        ``map``-like function that runs the per-image sampling (a process
        pool's ``map``, for example); the result does not depend on it.

    Returns
    -------
    Dictionary

    References
    ----------
    .. [1] M. Aharon, M. Elad and A. Bruckstein, "K-SVD: An Algorithm for
           Designing Overcomplete Dictionaries for Sparse Representation",
           IEEE Trans. Signal Processing 54(11), 2006.
    .. [2] R. Rubinstein, M. Zibulevsky and M. Elad, "Efficient Implementation
           of the K-SVD Algorithm using Batch Orthogonal Matching Pursuit",
           Technical Report CS-2008-08, Technion, 2008.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage import data
    >>> image = data.camera()[::4, ::4] / 255.0
    >>> dictionary = learn_dictionary([image], n_atoms=64, n_iterations=2, max_patches=2000)
    >>> dictionary.atoms.shape
    (64, 64)
    """
    if not images:
        raise ValueError("no training images")
    channel_counts = {as_channels_last(image).shape[2] for image in images}
    if len(channel_counts) > 1:
        raise ValueError(f"images mix channel counts {sorted(channel_counts)}")
    quotas = patch_quotas([np.shape(image) for image in images], patch_size, max_patches)
    samples = list(
        map_function(
            sample_image_patches,
            images,
            [patch_size] * len(images),
            quotas,
            [seed] * len(images),
            range(len(images)),
        )
    )
    return learn_dictionary_from_patches(
        np.concatenate(samples),
        patch_size=patch_size,
        n_channels=channel_counts.pop(),
        n_atoms=n_atoms,
        sparsity=sparsity,
        tol=tol,
        n_iterations=n_iterations,
        method=method,
        init=init,
        remove_mean=remove_mean,
        seed=seed,
        n_images=len(images),
        callback=callback,
    )
