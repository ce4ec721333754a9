"""Learning a patch :class:`~spmcli.sparse.dictionary.Dictionary` from images with K-SVD."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .._version import __version__
from .dictionary import Dictionary, dct_dictionary
from .ksvd import KSVD
from .patches import as_channels_last, remove_patch_means, sample_patches

__all__ = ["learn_dictionary", "training_patches"]

INIT_CHOICES = ("dct", "data")


def training_patches(
    images: Sequence[np.ndarray], patch_size: int, max_patches: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Patches drawn from all images, each image contributing in proportion to
    its number of patch positions; every patch when there are at most ``max_patches``.

    Returns
    -------
    ndarray, shape (n_patches, patch_size**2 * n_channels)
    """
    if not images:
        raise ValueError("no training images")
    counts = []
    for image in images:
        height, width = image.shape[:2]
        if height < patch_size or width < patch_size:
            raise ValueError(f"image is {width} x {height} pixels, smaller than the {patch_size} x {patch_size} patch")
        counts.append((height - patch_size + 1) * (width - patch_size + 1))
    counts = np.asarray(counts)
    total = int(counts.sum())
    if max_patches is None or max_patches >= total:
        shares = counts
    else:
        exact = max_patches * counts / total
        shares = np.floor(exact).astype(int)
        leftover = max_patches - int(shares.sum())
        shares[np.argsort(-(exact - shares), kind="stable")[:leftover]] += 1
    blocks = [
        sample_patches(as_channels_last(image), patch_size, int(share), rng)
        for image, share in zip(images, shares, strict=True)
        if share > 0
    ]
    return np.concatenate(blocks)


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
) -> Dictionary:
    """Learn a patch dictionary from images with K-SVD.

    Parameters
    ----------
    images : sequence of ndarray
        Float images, all ``(H, W)`` or all ``(H, W, C)`` with the same ``C``.
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
        Train on at most this many randomly chosen patches.
    remove_mean : bool
        Code patches without their per-channel mean (the usual choice for
        denoising: the dictionary then models texture, not brightness).
    seed : int
        Seed for patch sampling and K-SVD.
    callback : callable, optional
        ``callback(iteration, n_iterations, rmse)`` after each iteration.

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
    if init not in INIT_CHOICES:
        raise ValueError(f"init must be one of {INIT_CHOICES}, got {init!r}")
    channel_counts = {as_channels_last(image).shape[2] for image in images}
    if len(channel_counts) > 1:
        raise ValueError(f"images mix channel counts {sorted(channel_counts)}")
    n_channels = channel_counts.pop() if channel_counts else 1
    if sparsity is None and tol is None:
        sparsity = 4
    rng = np.random.default_rng(seed)
    patches = training_patches(images, patch_size, max_patches, rng)
    if remove_mean:
        patches, _ = remove_patch_means(patches, n_channels)
    # Flat patches carry nothing to learn from (and have no direction for init="data").
    patches = patches[np.linalg.norm(patches, axis=1) > 1e-10]
    n_features = patch_size * patch_size * n_channels
    if patches.shape[0] == 0:
        raise ValueError("the images are flat: every training patch is constant")
    squared_tol = None if tol is None else n_features * tol * tol
    initial = dct_dictionary(patch_size, n_atoms, n_channels) if init == "dct" else "data"
    model = KSVD(
        n_atoms,
        sparsity=sparsity,
        tol=squared_tol,
        n_iterations=n_iterations,
        method=method,
        init=initial,
        random_state=rng,
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
        "n_training_images": len(images),
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
